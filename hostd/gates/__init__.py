"""Land gates: the repository's own checks, run on the exact tree a merge is about to land.

`hostd.git.gatefile` reads `.agent-relay/land-gates.json` from a commit; here `levels` reads
the merge's `gateLevel` params, `checkout` materialises a commit outside every worktree,
`runner` runs the gates there, `groups` records their process groups, `sweep` cleans up after a
crash and `step` is the whole gate step of a land.
"""
