# Shared by the soak scripts (sourced, not run).

# record_result FILE SECTION: insert the lines in FILE at the end of the
# tests/RESULTS.md section whose heading starts with "## SECTION" (or at
# the end of the file when there is none), then remove FILE.  $top is the
# source tree.
record_result() {
    res="$top/tests/RESULTS.md"
    awk -v entry="$1" -v sec="## $2" '
        BEGIN { while ((getline l < entry) > 0) e = e l "\n" }
        /^## / { if (insec && !done) { printf "%s\n", e; done = 1 }
                 insec = (index($0, sec) == 1) }
        { print }
        END { if (!done) printf "\n%s", e }' "$res" >"$res.tmp"
    mv "$res.tmp" "$res"
    rm -f "$1"
}
