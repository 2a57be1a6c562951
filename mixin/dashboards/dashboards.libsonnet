// grafanaDashboards: file name -> dashboard.
(import 'secure-channel-pool.libsonnet')
