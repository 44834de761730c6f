-- Share of pulls that came from each cloud provider (host), and from none.
-- param: from 2026-11-01
-- param: to 2026-12-01
SELECT coalesce(host, '(not a cloud)') AS host,
       count(*) AS pulls,
       round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS percent
FROM pulls
WHERE action <> 'version_check'
  AND action_day >= '{{from}}' AND action_day < '{{to}}'
GROUP BY 1
ORDER BY pulls DESC, host
