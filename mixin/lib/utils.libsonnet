// Small helpers shared by the rules, alerts and dashboards.
{
  // A number as PromQL and people write it: 0.95, not 0.94999999999999996.
  num(x):: '%g' % x,

  // A number rounded to what '%g' shows, for JSON fields (0.0144, not 0.014400000000000001).
  round(x):: std.parseJson('%g' % x),

  // Non-empty items joined with ', ': label lists of `by (...)` and matcher lists of `{...}`.
  list(items):: std.join(', ', std.filter(function(s) s != '', items)),

  // A Prometheus duration of one unit in words, for descriptions: '8m' -> '8 minutes'.
  words(duration)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day' };
    local n = std.substr(duration, 0, std.length(duration) - 1);
    local unit = units[duration[std.length(duration) - 1]];
    '%s %s%s' % [n, unit, if n == '1' then '' else 's'],

  // A text block as one line: descriptions are written as ||| blocks for reading and
  // rendered as the single line of text Alertmanager shows.
  oneLine(text):: std.join(' ', std.filter(function(s) s != '', std.split(std.strReplace(text, '\n', ' '), ' '))),
}
