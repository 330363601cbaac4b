-- Deferral signatures over the whole history: one row per provider × 4xx code × enhanced status ×
-- template, combining the daily `deferral_signatures` partitions. `share` is the signature's part of
-- the provider's 4xx deferrals over all days; `days` counts the days it occurred on.
CREATE OR REPLACE VIEW deferral_signatures_all AS
WITH per_signature AS (
    SELECT
        provider,
        smtp_code,
        enhanced_status,
        template,
        CAST(sum("count") AS BIGINT) AS "count",
        count(DISTINCT "day") AS days,
        min(first_seen) AS first_seen,
        max(last_seen) AS last_seen,
        list_sort(list_distinct(flatten(list(pools)))) AS pools,
        list_sort(list_distinct(flatten(list(source_ips)))) AS source_ips,
        list_sort(list_distinct(flatten(list(mtas)))) AS mtas,
        arg_min(example, first_seen) AS example
    FROM deferral_signatures
    GROUP BY provider, smtp_code, enhanced_status, template
)
SELECT
    *,
    "count" / sum("count") OVER (PARTITION BY provider) AS share
FROM per_signature;
