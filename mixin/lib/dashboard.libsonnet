// Grafana building blocks for the mixin's dashboards: plain JSON, no grafonnet, so the mixin
// has no dependency to vendor. Only what the dashboards here use.
{
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  // A Prometheus query. Tables need instant queries in table format; stats that show a
  // whole time range ($__range) are instant too.
  target(expr, legend='', instant=false, table=false):: {
    datasource: $.datasource,
    expr: expr,
    editorMode: 'code',
    legendFormat: legend,
    range: !instant,
    instant: instant,
  } + (if table then { format: 'table' } else {}),

  // Threshold steps from [color, value] pairs; the first step's value is null (the base).
  thresholds(steps):: {
    mode: 'absolute',
    steps: [{ color: s[0], value: s[1] } for s in steps],
  },

  // A value mapping from {value: [text, color]}, in the order of the values.
  valueMapping(map):: [{
    type: 'value',
    options: {
      [v]: { text: map[v][0], color: map[v][1], index: std.find(v, std.objectFields(map))[0] }
      for v in std.objectFields(map)
    },
  }],

  local panel(type, id, title, description, gridPos, targets) = {
    type: type,
    id: id,
    title: title,
    description: description,
    datasource: $.datasource,
    gridPos: gridPos,
    targets: [
      targets[i] { refId: std.char(std.codepoint('A') + i) }
      for i in std.range(0, std.length(targets) - 1)
    ],
  },

  local withDecimals(d) = if d == null then {} else { decimals: d },

  grid(x, y, w, h):: { x: x, y: y, w: w, h: h },

  row(id, title, y, description=null):: {
    type: 'row',
    id: id,
    title: title,
    collapsed: false,
    gridPos: $.grid(0, y, 24, 1),
    panels: [],
  } + (if description == null then {} else { description: description }),

  stat(id,
       title,
       description,
       gridPos,
       unit,
       targets,
       thresholds=[['green', null]],
       mappings=[],
       colorMode='background',
       decimals=null)::
    panel('stat', id, title, description, gridPos, targets) {
      fieldConfig: {
        defaults: {
          unit: unit,
          color: { mode: 'thresholds' },
          thresholds: $.thresholds(thresholds),
          mappings: mappings,
        } + withDecimals(decimals),
        overrides: [],
      },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: colorMode,
        graphMode: 'none',
        justifyMode: 'auto',
        orientation: 'auto',
        textMode: 'value_and_name',
        wideLayout: true,
        showPercentChange: false,
      },
    },

  // A time series panel. thresholdsStyle 'line+area' draws the thresholds on the graph.
  timeseries(id,
             title,
             description,
             gridPos,
             unit,
             targets,
             thresholds=[['green', null]],
             thresholdsStyle='off',
             decimals=null)::
    panel('timeseries', id, title, description, gridPos, targets) {
      fieldConfig: {
        defaults: {
          unit: unit,
          color: { mode: 'palette-classic' },
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: 10,
            showPoints: 'never',
            spanNulls: false,
            axisSoftMin: 0,
            thresholdsStyle: { mode: thresholdsStyle },
          },
          thresholds: $.thresholds(thresholds),
          mappings: [],
        } + withDecimals(decimals),
        overrides: [],
      },
      options: {
        legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['lastNotNull', 'max'] },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },

  stateTimeline(id, title, description, gridPos, targets, mappings, thresholds)::
    panel('state-timeline', id, title, description, gridPos, targets) {
      fieldConfig: {
        defaults: {
          unit: 'none',
          color: { mode: 'thresholds' },
          mappings: mappings,
          thresholds: $.thresholds(thresholds),
          custom: { fillOpacity: 70, lineWidth: 0 },
        },
        overrides: [],
      },
      options: {
        showValue: 'never',
        mergeValues: true,
        rowHeight: 0.9,
        alignValue: 'left',
        legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
        tooltip: { mode: 'single', sort: 'none' },
      },
    },

  // A table of instant queries merged on their labels; columns are set by the caller's
  // overrides and transformations.
  table(id, title, description, gridPos, targets, overrides, transformations, sortBy)::
    panel('table', id, title, description, gridPos, targets) {
      fieldConfig: {
        defaults: {
          unit: 'none',
          custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
          thresholds: $.thresholds([['green', null]]),
          mappings: [],
        },
        overrides: overrides,
      },
      options: {
        showHeader: true,
        cellHeight: 'sm',
        footer: { show: false, reducer: ['sum'], fields: '' },
        sortBy: sortBy,
      },
      transformations: transformations,
    },

  // Template variables.
  datasourceVariable(regex):: {
    type: 'datasource',
    name: 'datasource',
    label: 'Data source',
    query: 'prometheus',
    current: {},
    hide: 0,
    includeAll: false,
    multi: false,
    options: [],
    refresh: 1,
    regex: regex,
  },

  // A multi-select label_values() variable with an All option that matches any value.
  queryVariable(name, label, query, sort=1):: {
    type: 'query',
    name: name,
    label: label,
    datasource: $.datasource,
    query: query,
    definition: query,
    refresh: 2,
    regex: '',
    sort: sort,
    multi: true,
    includeAll: true,
    allValue: '.+',
    hide: 0,
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
  },
}
