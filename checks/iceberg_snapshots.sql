-- iceberg workload (spark-sql -f, with --hivevar run=…): a table in the catalog `ocf`
-- whose warehouse is on S3, two INSERTs (two snapshots), the snapshots table, and
-- back to the first snapshot: time travel by a tag, then set_current_snapshot.
CREATE TABLE ocf.checks.t_${run} (id BIGINT, name STRING) USING iceberg;
INSERT INTO ocf.checks.t_${run} VALUES (1, 'a'), (2, 'b');
ALTER TABLE ocf.checks.t_${run} CREATE TAG first_insert;
INSERT INTO ocf.checks.t_${run} VALUES (3, 'c');
SELECT concat('ICEBERG ROWS=', count(*), ' SUM=', sum(id)) FROM ocf.checks.t_${run};
SELECT concat('ICEBERG SNAPSHOTS=', count(*), ' OPERATIONS=', concat_ws(',', collect_list(operation)))
  FROM (SELECT operation FROM ocf.checks.t_${run}.snapshots ORDER BY committed_at);
SELECT concat('ICEBERG TAG IS FIRST SNAPSHOT=', r.snapshot_id = s.snapshot_id)
  FROM ocf.checks.t_${run}.refs r,
       (SELECT snapshot_id FROM ocf.checks.t_${run}.snapshots ORDER BY committed_at LIMIT 1) s
  WHERE r.name = 'first_insert';
SELECT concat('ICEBERG VERSION AS OF FIRST ROWS=', count(*), ' SUM=', sum(id))
  FROM ocf.checks.t_${run} VERSION AS OF 'first_insert';
CALL ocf.system.set_current_snapshot(table => 'checks.t_${run}', ref => 'first_insert');
SELECT concat('ICEBERG AFTER ROLLBACK ROWS=', count(*), ' SUM=', sum(id)) FROM ocf.checks.t_${run};
