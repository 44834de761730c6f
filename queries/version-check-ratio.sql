-- Version checks per pull, per repository: how much of the traffic is clients
-- asking "is there something new?" rather than pulling.
-- param: from 2026-11-01
-- param: to 2026-12-01
-- param: limit:int 20
SELECT namespace, repository,
       count(*) FILTER (WHERE action = 'version_check') AS version_checks,
       count(*) FILTER (WHERE action <> 'version_check') AS pulls,
       round(CAST(count(*) FILTER (WHERE action = 'version_check') AS DOUBLE)
             / greatest(count(*) FILTER (WHERE action <> 'version_check'), 1), 3) AS checks_per_pull
FROM pulls
WHERE action_day >= '{{from}}' AND action_day < '{{to}}'
GROUP BY namespace, repository
ORDER BY version_checks DESC, namespace, repository
LIMIT {{limit}}
