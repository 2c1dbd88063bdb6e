"""Land gates: the repository's own checks, run on the exact tree a merge is about to land.

`declaration` reads `.agent-relay/land-gates.json` from a commit, `levels` reads the merge's
`gateLevel` params, `checkout` materialises a commit outside every worktree, `runner` runs the
gates there, `groups` records their process groups and `sweep` cleans up after a crash.
"""
