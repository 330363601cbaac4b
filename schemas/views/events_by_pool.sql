-- Events with the migration pool they belong to on both sides of the cutover: PowerMTA rows keep
-- their VMTA pool; KumoMTA rows map their egress pool back through the cutover plan (plan.yaml
-- vmta_map), so one pool's history reads continuously across the cutover.
CREATE OR REPLACE VIEW events_by_pool AS
WITH egress AS (
    SELECT DISTINCT unnest(kumo_egress_pools) AS egress_pool, pool AS migration_pool
    FROM cutover_plan
    WHERE len(kumo_egress_pools) > 0
)
SELECT e.*, coalesce(g.migration_pool, e.pool) AS migration_pool
FROM events AS e
LEFT JOIN egress AS g ON e.mta = 'kumo' AND e.pool = g.egress_pool;
