-- The sync-state database (connection fakturownia_sync_db), separate from Airflow's own metadata.
CREATE DATABASE fakturownia_sync OWNER airflow;
