-- Not a phase: does text -> image search find what a shopper types? For every colour and article
-- type that at least 5 indexed products share ('Red Tshirts', 'Black Watches', …), phase 4's
-- image index is searched with the text (embedded by the index's CLIP text tower) and its top 10
-- photos are checked against the catalog: hit_at_10 is the share of queries with at least one
-- photo of that colour and article type in the top 10, precision_at_10 the mean share of such
-- photos among the 10. demo.sh runs it after phase 4.

CREATE OR REPLACE TEMPORARY VIEW text_to_image_queries AS
SELECT base_color, article_type, concat(base_color, ' ', article_type) AS query_text
FROM main.fashion_demo.product_embeddings_multimodal_v2
GROUP BY base_color, article_type
HAVING COUNT(*) >= 5;

SELECT
  COUNT(*)                                                    AS queries,
  ROUND(AVG(CASE WHEN matching > 0 THEN 1.0 ELSE 0.0 END), 3) AS hit_at_10,
  ROUND(AVG(matching / 10.0), 3)                              AS precision_at_10
FROM (
  SELECT q.query_text,
         SUM(CASE WHEN r.base_color = q.base_color AND r.article_type = q.article_type
                  THEN 1 ELSE 0 END) AS matching
  FROM text_to_image_queries q,
       LATERAL vector_search(index => 'main.fashion_demo.vs_image_search',
                             query_text => q.query_text, num_results => 10) r
  GROUP BY q.query_text
) per_query;
