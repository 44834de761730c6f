-- Top tags by pulls (tag and digest pulls; version checks excluded) in a span of days.
-- param: from 2026-11-01
-- param: to 2026-12-01
-- param: limit:int 20
SELECT namespace, repository, tag,
       count(*) AS pulls,
       count(DISTINCT ip_hash) AS unique_ips
FROM pulls
WHERE action = 'pull_by_tag'
  AND action_day >= '{{from}}' AND action_day < '{{to}}'
GROUP BY namespace, repository, tag
ORDER BY pulls DESC, namespace, repository, tag
LIMIT {{limit}}
