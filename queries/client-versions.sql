-- Client tool versions over time: actions per ISO week, tool and version.
-- param: from 2026-11-01
-- param: to 2026-12-01
-- param: tool docker
SELECT CAST(date_trunc('week', timestamp) AS DATE) AS week,
       user_agent_tool, coalesce(user_agent_version, '') AS version,
       count(*) AS actions
FROM pulls
WHERE user_agent_tool = '{{tool}}'
  AND action_day >= '{{from}}' AND action_day < '{{to}}'
GROUP BY 1, 2, 3
ORDER BY 1, actions DESC, version
