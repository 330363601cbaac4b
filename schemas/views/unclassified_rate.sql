-- Share of failures our taxonomy left `other`, per provider and day (both MTAs together).
CREATE OR REPLACE VIEW unclassified_rate AS
SELECT
    day,
    provider,
    CAST(sum(failures) AS BIGINT) AS failures,
    CAST(sum(unclassified) AS BIGINT) AS unclassified,
    sum(unclassified)::DOUBLE / nullif(sum(failures), 0) AS unclassified_rate
FROM classifier_stats
GROUP BY day, provider;
