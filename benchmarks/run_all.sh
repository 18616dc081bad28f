#!/usr/bin/env bash
# Every measurement of docs/benchmarks.md, one after the other (about an hour on the
# 2-core machine): views at 10k/2k and 1M/200k (normal and adversarial shapes), queue at 20k
# items with 1 and 4 workers, batch 1 and 10, on SQLite and on PostgreSQL; retention, metrics,
# and the pressure run on PostgreSQL.
#   bash benchmarks/run_all.sh [OUT_DIR] [POSTGRES_SERVER_URL]
# Each run writes OUT_DIR/<name>.txt (the printed tables) and OUT_DIR/<name>.json.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-bench-results}
PG=${2:-${NEXUS_BENCH_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"

run() {  # name, script, args...
    local name=$1; shift
    echo "== $name: $* ($(date +%T))"
    timeout 3600 "$PY" "$@" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>"$OUT/$name.log" \
        || echo "   FAILED (exit $?), see $OUT/$name.log"
}

for db in sqlite pg; do
    arg=sqlite; [ "$db" = pg ] && arg=$PG
    run "views-$db-10k" benchmarks/views.py --db "$arg" --files 10000 --work 2000 --explain
    run "views-$db-10k-adv" benchmarks/views.py --db "$arg" --files 10000 --work 2000 --adversarial --explain
done
for db in sqlite pg; do
    arg=sqlite; [ "$db" = pg ] && arg=$PG
    run "views-$db-1m" benchmarks/views.py --db "$arg" --files 1000000 --work 200000 --explain
    run "views-$db-1m-adv" benchmarks/views.py --db "$arg" --files 1000000 --work 200000 --adversarial --explain
done
for db in sqlite pg; do
    arg=sqlite; [ "$db" = pg ] && arg=$PG
    for workers in 1 4; do
        for batch in 1 10; do
            run "queue-$db-w$workers-b$batch" benchmarks/drain.py --db "$arg" --items 20000 \
                --workers "$workers" --batch "$batch"
            if [ "$db" = pg ]; then  # the same with planner statistics refreshed first
                run "queue-$db-w$workers-b$batch-analyze" benchmarks/drain.py --db "$arg" \
                    --items 20000 --workers "$workers" --batch "$batch" --analyze
            fi
        done
    done
done
run retention-sqlite-1m benchmarks/retention.py --db sqlite --history 1000000
run retention-pg-200k benchmarks/retention.py --db "$PG" --history 200000 --claims 500 --reps 100
run retention-pg-20k-b100 benchmarks/retention.py --db "$PG" --history 20000 --claims 300 \
    --reps 50 --batch-size 100
run metrics-sqlite-1m benchmarks/metrics.py --db sqlite --items 1000000 --chunk 50000
run metrics-pg-200k benchmarks/metrics.py --db "$PG" --items 200000
run startup-sqlite benchmarks/startup.py --db sqlite --runs 30
run startup-pg benchmarks/startup.py --db "$PG" --runs 30
# ~4.5 minutes: clean, a held XID, recovery, REPEATABLE READ readers (issue 13's pressure target)
run pressure-pg benchmarks/pressure.py --db "$PG"
echo "done ($(date +%T))"
