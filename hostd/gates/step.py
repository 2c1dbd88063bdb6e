"""The gate step of a land: which gates judge the candidate, where they run, what they said.

`run_land_gates` is what `workspace.merge` calls between building the candidate tip and the
compare-and-swap of the base: it reads the declaration from the commit the level names (the
base commit the replay was built on, by default), materialises the candidate in a throwaway
checkout under `state_dir`, runs the gates there and removes the checkout again.
"""

from __future__ import annotations

import os

from hostd.config import Config
from hostd.gates.checkout import materialise, remove
from hostd.gates.environment import gate_environment
from hostd.gates.levels import GateLevel
from hostd.gates.runner import GateRunner, GatesReport, Progress
from hostd.gates.sweep import gates_dir
from hostd.git.gatefile import declaration_at
from hostd.gitpool import GitPool


async def run_land_gates(
    pool: GitPool,
    repo_path: str,
    base_sha: str,
    candidate_sha: str,
    level: GateLevel,
    config: Config,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> GatesReport:
    """Run the gates on `candidate_sha`, the tip built on `base_sha`, of the repository at
    `repo_path` (its common git dir). `report.failure` set: the land must not happen."""
    skipped = level.skipped()
    declaring = level.declaring_commit(base_sha, candidate_sha)
    if declaring is None:
        return GatesReport(skipped=skipped)
    declaration = await pool.run(declaration_at, repo_path, declaring, key=repo_path)
    if not declaration.gates and not declaration.error:
        return GatesReport(skipped=skipped)
    folder = gates_dir(config.state_dir)
    runner = GateRunner(
        folder,
        gate_environment(os.environ, [config.relay.token]),
        config.workspaces.gate_timeout,
        progress,
    )
    if declaration.error:
        report = await runner.run_all(declaration, "", deadline)
    else:
        checkout = await pool.run(materialise, repo_path, candidate_sha, folder, key=repo_path)
        try:
            report = await runner.run_all(declaration, checkout, deadline)
        finally:
            await pool.run(remove, checkout, key=repo_path)
    report.skipped = skipped
    return report
