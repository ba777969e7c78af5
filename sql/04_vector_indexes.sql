-- Phase 4 (plan step 8, option A): the six vector indexes of the A/B test over the phase-3
-- embeddings, and searches against them.
--
-- Each CREATE VECTOR INDEX is the SQL form of the plan's create_delta_sync_index call: the same
-- endpoint, pipeline type and primary key (embedding_dimension may be added; it is checked
-- against the column). The structure and its parameters follow the row count (IVF_FLAT, searched
-- in memory, while the vectors fit in 4 GiB; IVF_HNSW_SQ above), and the search breadth is
-- measured to reach recall@10 0.95.
-- After the source table changes, SYNC INDEX applies only the changed rows.

CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_text_search
ON main.fashion_demo.product_embeddings_multimodal_v2 (text_embedding_baseline)
WITH (endpoint_name = 'fashion_vector_search', pipeline_type = 'TRIGGERED', primary_key = 'product_id',
      metric = 'cosine', embedding_model = 'clip',
      columns = (product_display_name, article_type, master_category, base_color, gender, price, image_path));

CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_image_search
ON main.fashion_demo.product_embeddings_multimodal_v2 (image_embedding)
WITH (endpoint_name = 'fashion_vector_search', pipeline_type = 'TRIGGERED', primary_key = 'product_id',
      metric = 'cosine', embedding_model = 'clip',
      columns = (product_display_name, article_type, master_category, base_color, gender, price, image_path));

CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_hybrid_search
ON main.fashion_demo.product_embeddings_multimodal_v2 (hybrid_embedding_baseline)
WITH (endpoint_name = 'fashion_vector_search', pipeline_type = 'TRIGGERED', primary_key = 'product_id',
      metric = 'cosine', embedding_model = 'clip',
      columns = (product_display_name, article_type, master_category, base_color, gender, price, image_path));

CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_text_search_enriched
ON main.fashion_demo.product_embeddings_multimodal_v2 (text_embedding_enriched)
WITH (endpoint_name = 'fashion_vector_search', pipeline_type = 'TRIGGERED', primary_key = 'product_id',
      metric = 'cosine', embedding_model = 'clip',
      columns = (product_display_name, article_type, master_category, base_color, gender, price, image_path,
                 material, pattern, rich_text_description));

-- Same vectors as vs_image_search (the plan keeps both names for the A/B routing).
CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_image_search_enriched
ON main.fashion_demo.product_embeddings_multimodal_v2 (image_embedding)
WITH (endpoint_name = 'fashion_vector_search', pipeline_type = 'TRIGGERED', primary_key = 'product_id',
      metric = 'cosine', embedding_model = 'clip',
      columns = (product_display_name, article_type, master_category, base_color, gender, price, image_path,
                 material, pattern, rich_text_description));

-- text_column adds a BM25 full-text index for query_type => 'HYBRID'.
CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_hybrid_search_enriched
ON main.fashion_demo.product_embeddings_multimodal_v2 (hybrid_embedding_enriched)
WITH (endpoint_name = 'fashion_vector_search', pipeline_type = 'TRIGGERED', primary_key = 'product_id',
      metric = 'cosine', embedding_model = 'clip', text_column = 'rich_text_description',
      columns = (product_display_name, article_type, master_category, base_color, gender, price, image_path,
                 material, pattern, rich_text_description));

SHOW INDEXES IN main.fashion_demo;

-- A text query, baseline against enriched (query_text is embedded with the index's model).
SELECT 'baseline' AS variant, product_id, product_display_name, article_type, ROUND(score, 4) AS score
FROM vector_search(index => 'main.fashion_demo.vs_hybrid_search',
                   query_text => 'red floral summer dress', num_results => 5)
UNION ALL
SELECT 'enriched', product_id, product_display_name, article_type, ROUND(score, 4)
FROM vector_search(index => 'main.fashion_demo.vs_hybrid_search_enriched',
                   query_text => 'red floral summer dress', num_results => 5)
ORDER BY variant, score DESC;

-- Filtered before the top-k: women's products under 2,000.
SELECT product_id, product_display_name, gender, price, ROUND(score, 4) AS score
FROM vector_search(index => 'main.fashion_demo.vs_text_search_enriched',
                   query_text => 'black leather watch with metal strap',
                   num_results => 5,
                   filters => 'gender = ''Women'' AND price < 2000')
ORDER BY score DESC;

-- "More like this": the photos nearest to one product's photo (its own comes first).
SELECT product_id, product_display_name, article_type, ROUND(score, 4) AS score
FROM vector_search(index => 'main.fashion_demo.vs_image_search',
                   query_vector => (SELECT image_embedding
                                    FROM main.fashion_demo.product_embeddings_multimodal_v2
                                    ORDER BY product_id LIMIT 1),
                   num_results => 5)
ORDER BY score DESC;

-- HYBRID: the ANN ranking and BM25 over the enriched descriptions, fused by reciprocal rank.
SELECT product_id, product_display_name, material, ROUND(score, 4) AS score
FROM vector_search(index => 'main.fashion_demo.vs_hybrid_search_enriched',
                   query_text => 'black leather watch', query_type => 'HYBRID', num_results => 5)
ORDER BY score DESC;

DESCRIBE INDEX main.fashion_demo.vs_hybrid_search_enriched;
