# Sourced by the recipe scripts: a run's time on the clock, summed over every time the script ran, so a recipe
# interrupted (a session that ends, a kill) and resumed still reports its whole time.
#   clock_start DIR   start counting into DIR/recipe_clock (the seconds counted so far, one integer) and append to
#                     DIR/recipe_clock.log a line per stamp; a background writer updates the file every CLOCK_EVERY
#                     seconds (default 30) while the script lives, so a killed run loses at most that much
#   stamp WHAT        print and log WHAT's end: seconds this run, and the recipe's total on the clock
# Only time a script ran counts: hours between sessions do not. Time a stage spent beside other work does.
clock_start() {
    CLOCK_DIR=$1
    mkdir -p "$CLOCK_DIR"
    CLOCK_BASE=0
    if [ -f "$CLOCK_DIR/recipe_clock" ]; then CLOCK_BASE=$(cat "$CLOCK_DIR/recipe_clock"); fi
    CLOCK_T0=$(date +%s)
    (
        trap 'exit 0' TERM
        while sleep "${CLOCK_EVERY:-30}" && kill -0 $$ 2>/dev/null; do  # $$: the script, even in this subshell
            echo $(( CLOCK_BASE + $(date +%s) - CLOCK_T0 )) > "$CLOCK_DIR/recipe_clock.tmp.$BASHPID"
            mv "$CLOCK_DIR/recipe_clock.tmp.$BASHPID" "$CLOCK_DIR/recipe_clock"
        done
    ) > /dev/null 2>&1 &  # not holding the script's stdout: its sleep outlives a kill by up to a period
    CLOCK_PID=$!
    trap 'clock_stop' EXIT
}

clock_stop() {  # the exit trap: never the reason a script fails
    kill "$CLOCK_PID" 2>/dev/null || true
    { echo $(( CLOCK_BASE + $(date +%s) - CLOCK_T0 )) > "$CLOCK_DIR/recipe_clock.tmp.$$" &&
      mv "$CLOCK_DIR/recipe_clock.tmp.$$" "$CLOCK_DIR/recipe_clock"; } || true
}

stamp() {
    local now total
    now=$(date +%s)
    total=$(( CLOCK_BASE + now - CLOCK_T0 ))
    echo "[$(basename "$0" .sh)] $1 done after $(( now - CLOCK_T0 )) s this run; the recipe's clock: $total s"
    printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(basename "$0")" "$1" "$total" >> "$CLOCK_DIR/recipe_clock.log"
}
