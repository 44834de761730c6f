-- Pulls, version checks and unique IPs per day for one repository.
-- param: namespace library
-- param: repository nginx
-- param: from 2026-11-01
-- param: to 2026-12-01
SELECT action_day,
       count(*) FILTER (WHERE action <> 'version_check') AS pulls,
       count(*) FILTER (WHERE action = 'version_check') AS version_checks,
       count(DISTINCT ip_hash) AS unique_ips
FROM pulls
WHERE namespace = '{{namespace}}' AND repository = '{{repository}}'
  AND action_day >= '{{from}}' AND action_day < '{{to}}'
GROUP BY action_day
ORDER BY action_day
