"""`<root>/bin/hostd-guard`: a POSIX sh script run before every start (ExecStartPre).

While a version is on trial (`<root>/trial` exists) it counts the start in `trial.attempts`;
past MAX_ATTEMPTS starts or the deadline it points `current` back at the trial's `from`
version, writes the reason to `trial.rolled-back` for the old version to report, and ends the
trial. It always exits 0, so the unit starts whatever `current` now is. It is written once by
`hostd service install` and never upgraded.
"""

from __future__ import annotations

import shlex

from hostd.upgrade.layout import Layout, write_atomic

MAX_ATTEMPTS = 3

_SCRIPT = """#!/bin/sh
# hostd-guard: rolls a new hostd version back when it cannot start (see hostd service status).
ROOT=@ROOT@
MAX_ATTEMPTS=@MAX@
trial="$ROOT/trial"
[ -f "$trial" ] || exit 0
to=$(sed -n 's/^to=//p' "$trial")
from=$(sed -n 's/^from=//p' "$trial")
deadline=$(sed -n 's/^deadline=//p' "$trial")
echo "$to" >> "$ROOT/trial.attempts"
attempts=$(wc -l < "$ROOT/trial.attempts" | tr -d ' ')
now=$(date +%s)
reason=
if [ "$attempts" -gt "$MAX_ATTEMPTS" ]; then
  reason="$to did not come up in $MAX_ATTEMPTS starts"
elif [ -n "$deadline" ] && [ "$now" -gt "$deadline" ]; then
  reason="$to was not healthy before the trial deadline"
fi
[ -n "$reason" ] || exit 0
if [ -z "$from" ] || [ ! -d "$ROOT/versions/$from" ]; then
  echo "hostd-guard: cannot roll back $to: versions/$from is missing" >&2
  exit 0
fi
rm -f "$ROOT/.current.guard"
ln -s "versions/$from" "$ROOT/.current.guard"
if ! mv -f -T "$ROOT/.current.guard" "$ROOT/current" 2>/dev/null; then
  rm -f "$ROOT/current" && mv -f "$ROOT/.current.guard" "$ROOT/current"
fi
printf '%s\\n' "$reason" > "$ROOT/.trial.rolled-back.tmp"
mv -f "$ROOT/.trial.rolled-back.tmp" "$ROOT/trial.rolled-back"
rm -f "$trial" "$ROOT/trial.attempts"
echo "hostd-guard: rolled back to $from: $reason" >&2
exit 0
"""


def guard_script(layout: Layout) -> str:
    return _SCRIPT.replace("@ROOT@", shlex.quote(str(layout.root))).replace(
        "@MAX@", str(MAX_ATTEMPTS)
    )


def write_guard(layout: Layout) -> None:
    write_atomic(layout.guard, guard_script(layout), mode=0o755)


def write_trial(layout: Layout, to: str, previous: str, deadline_s: int) -> None:
    """Start a trial the guard sees: a fresh attempt count, no old verdict."""
    for stale in (layout.guard_attempts, layout.guard_verdict):
        stale.unlink(missing_ok=True)
    write_atomic(layout.trial, f"to={to}\nfrom={previous}\ndeadline={deadline_s}\n")


def end_trial(layout: Layout) -> None:
    for path in (layout.trial, layout.guard_attempts, layout.guard_verdict):
        path.unlink(missing_ok=True)


def guard_verdict(layout: Layout) -> str | None:
    """The reason the guard rolled back, if it did."""
    try:
        return layout.guard_verdict.read_text().strip() or "rolled back by hostd-guard"
    except FileNotFoundError:
        return None
