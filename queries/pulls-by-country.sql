-- Pulls and unique IPs per country (empty country: no geolocation data for the IP).
-- param: from 2026-11-01
-- param: to 2026-12-01
SELECT coalesce(country, '') AS country,
       count(*) FILTER (WHERE action <> 'version_check') AS pulls,
       count(DISTINCT ip_hash) AS unique_ips
FROM pulls
WHERE action_day >= '{{from}}' AND action_day < '{{to}}'
GROUP BY 1
ORDER BY pulls DESC, country
