-- Phase 5: did the enriched index win the A/B test? Reads the search events `vitrine serve`
-- logged (the plan's Step 10 table: one row per search, its clicks, carts and purchases folded
-- in). Runs unchanged on Databricks.

-- The plan's Step 10 table, as `vitrine serve` creates it: here too, so that the analysis runs
-- (on no rows) before any traffic.
CREATE TABLE IF NOT EXISTS main.fashion_demo.search_events (
  event_id STRING,
  timestamp TIMESTAMP,
  user_id STRING,
  query STRING,
  variant STRING,  -- "baseline" or "enriched"
  results_shown ARRAY<INT>,
  clicked_product_ids ARRAY<INT>,
  added_to_cart ARRAY<INT>,
  purchased ARRAY<INT>,
  time_to_first_click FLOAT
);

-- The plan's Step 11 query, unchanged.
SELECT
  variant,
  COUNT(*) as searches,
  SUM(CASE WHEN SIZE(clicked_product_ids) > 0 THEN 1 ELSE 0 END) as searches_with_click,
  ROUND(100.0 * SUM(CASE WHEN SIZE(clicked_product_ids) > 0 THEN 1 ELSE 0 END) / COUNT(*), 2) as ctr_pct,
  SUM(CASE WHEN SIZE(purchased) > 0 THEN 1 ELSE 0 END) as conversions,
  ROUND(100.0 * SUM(CASE WHEN SIZE(purchased) > 0 THEN 1 ELSE 0 END) / COUNT(*), 2) as conversion_rate_pct,
  ROUND(AVG(time_to_first_click), 2) as avg_time_to_click_sec
FROM main.fashion_demo.search_events
GROUP BY variant;

-- Per variant and per metric: the rate with its 95 % Wilson interval.
CREATE OR REPLACE TEMPORARY VIEW ab_counts AS
SELECT
  variant,
  COUNT(*)                                                        AS searches,
  SUM(CASE WHEN SIZE(clicked_product_ids) > 0 THEN 1 ELSE 0 END)  AS clicked,
  SUM(CASE WHEN SIZE(purchased) > 0 THEN 1 ELSE 0 END)            AS converted,
  COUNT(time_to_first_click)                                      AS timed,
  AVG(time_to_first_click)                                        AS mean_ttfc,
  VAR_SAMP(time_to_first_click)                                   AS var_ttfc
FROM main.fashion_demo.search_events
GROUP BY variant;

CREATE OR REPLACE TEMPORARY VIEW ab_rates AS
SELECT variant, metric, searches, successes,
       successes / searches                                                 AS rate,
       -- Wilson score interval, z = 1.959964.
       (successes / searches + 1.920729 / searches
          - 1.959964 * SQRT(successes / searches * (1 - successes / searches) / searches
                            + 0.960365 / (searches * searches)))
         / (1 + 3.841459 / searches)                                        AS low,
       (successes / searches + 1.920729 / searches
          + 1.959964 * SQRT(successes / searches * (1 - successes / searches) / searches
                            + 0.960365 / (searches * searches)))
         / (1 + 3.841459 / searches)                                        AS high
FROM (
  SELECT variant, 'ctr' AS metric, CAST(searches AS DOUBLE) AS searches,
         CAST(clicked AS DOUBLE) AS successes FROM ab_counts
  UNION ALL
  SELECT variant, 'conversion', CAST(searches AS DOUBLE), CAST(converted AS DOUBLE) FROM ab_counts
) counted;

SELECT variant, metric, CAST(searches AS BIGINT) AS searches, CAST(successes AS BIGINT) AS successes,
       ROUND(100 * rate, 2) AS pct, ROUND(100 * low, 2) AS pct_low_95, ROUND(100 * high, 2) AS pct_high_95
FROM ab_rates
ORDER BY metric, variant;

-- Enriched against baseline: the difference of each rate with its 95 % interval (unpooled
-- standard error), the two-proportion z-test (pooled) and its two-sided p-value; and the
-- difference in mean time to first click (Welch's standard error, normal interval).
-- The normal tail uses Zelen and Severo's approximation (error below 1e-7).
CREATE OR REPLACE TEMPORARY VIEW ab_tests AS
SELECT e.metric,
       e.rate - b.rate                                                      AS difference,
       SQRT(e.rate * (1 - e.rate) / e.searches + b.rate * (1 - b.rate) / b.searches) AS se,
       (e.rate - b.rate)
         / SQRT((e.successes + b.successes) / (e.searches + b.searches)
                * (1 - (e.successes + b.successes) / (e.searches + b.searches))
                * (1 / e.searches + 1 / b.searches))                        AS z
FROM ab_rates e JOIN ab_rates b ON e.metric = b.metric
WHERE e.variant = 'enriched' AND b.variant = 'baseline'
UNION ALL
SELECT 'time_to_first_click',
       e.mean_ttfc - b.mean_ttfc,
       SQRT(e.var_ttfc / e.timed + b.var_ttfc / b.timed),
       (e.mean_ttfc - b.mean_ttfc) / SQRT(e.var_ttfc / e.timed + b.var_ttfc / b.timed)
FROM ab_counts e JOIN ab_counts b ON e.variant = 'enriched' AND b.variant = 'baseline';

SELECT metric,
       ROUND(difference, 4)                      AS enriched_minus_baseline,
       ROUND(difference - 1.959964 * se, 4)      AS low_95,
       ROUND(difference + 1.959964 * se, 4)      AS high_95,
       ROUND(z, 3)                               AS z,
       -- Two-sided p: 2 (1 − Φ(|z|)).
       ROUND(2 * EXP(-z * z / 2) / SQRT(2 * PI()) * (
               0.319381530 * t - 0.356563782 * POW(t, 2) + 1.781477937 * POW(t, 3)
             - 1.821255978 * POW(t, 4) + 1.330274429 * POW(t, 5)), 4) AS p_value
FROM (SELECT *, 1 / (1 + 0.2316419 * ABS(z)) AS t FROM ab_tests) tested
ORDER BY metric;
