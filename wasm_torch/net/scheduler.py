"""Coordinator decisions: register nodes, lease tasks, take results, settle quorums, expire leases.

Each public method is one transaction (Store.tx): validated first, written second, answered after
the commit. Settling a task (quorum.decide) pays the nodes whose hash is canonical (earn), charges
the job owner from the job's reservation (spend), slashes the stake of nodes that returned anything
else (slash, with the signed conflicting results stored as evidence), cancels replicas still
running, and closes the job (release) when its last task is decided.

Task choice: open tasks that still need a replica and that this node has not run, priority jobs
first, then the oldest job, then tasks already started; one of the first 16 such tasks is picked at
random so nodes cannot choose (or predict) which other node checks them. With growth on
(growth.py), a pick the node would have to load cold is replaced by a first replica of an artifact
it holds or was told to keep, when one waits at the same priority; checking replicas are never
steered.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

import sqlalchemy as sa

from ..collective.kuramoto import PhaseBoard
from . import db, economy, tensors
from .errors import BadMessage, Conflict, Forbidden, InsufficientCredit, LateResult, UnknownObject
from .growth import GrowthBoard
from .jobs import Catalog
from .quorum import decide, target_replicas
from .store import Store, Tx
from .wire import Envelope, b64e, canonical, now_ms
from .work import output_shapes

CANDIDATES = 16


class Scheduler:
    def __init__(self, store: Store, catalog: Catalog, rng: random.Random | None = None) -> None:
        self.store, self.catalog = store, catalog
        self.rng = rng or random.SystemRandom()
        self.rejected: dict[str, int] = {}  # unattributable refusals by reason (status page)
        self.phases: PhaseBoard | None = None  # heartbeat phases (collective/kuramoto.py)
        self.growth = GrowthBoard()  # where hot artifacts are kept (growth.py)

    @property
    def me(self) -> str:
        return self.store.signer.id

    # ---- nodes --------------------------------------------------------------------------------
    def register(self, tx: Tx, env: Envelope) -> dict[str, Any]:
        p, node = env.payload, env.sender
        if p["kind"] not in ("python", "browser"):
            raise BadMessage("node kind must be 'python' or 'browser'")
        if p["stake"] < 0:
            raise BadMessage("stake must be >= 0 micro-credits")
        row = tx.conn.execute(sa.select(db.nodes.c.id).where(db.nodes.c.id == node)).first()
        if row is None:
            tx.new_node(node, p["pubkey"], p["name"][:128], p["kind"])
        else:
            tx.update_node(node, name=p["name"][:128], kind=p["kind"], last_seen_ms=now_ms())
        have = self.store.ledger.account(node).staked(self.me)
        if p["stake"] > have:  # stake is a target: registering again does not bond twice
            tx.issue("stake", node, p["stake"] - have, "join")
        return self._standing(tx, node)

    def _standing(self, tx: Tx, node: str) -> dict[str, Any]:
        prm = tx.params
        staked = self.store.ledger.account(node).staked(self.me)
        if prm.admission == "staked" and staked < prm.join_stake:
            raise InsufficientCredit(
                f"this network admits staked nodes only: {node} holds {staked} of the {prm.join_stake} "
                "micro-credits of stake needed here; fund the account (wasm-torch ledger grant) and register with --stake"
            )
        n = tx.node(node)
        return {
            "node": node, "coordinator": self.me, "staked": staked, "probation": staked < prm.join_stake,
            "reputation": n.reputation, "poll_s": prm.poll_s, "heartbeat_s": prm.heartbeat_s, "lease_s": prm.lease_s,
        }  # fmt: skip

    def heartbeat(self, tx: Tx, node: str) -> dict[str, Any]:
        """Uptime bonus for the time since the previous heartbeat, if it came on time (within two
        heartbeat periods); paid in whole minutes. The answer also carries `phase_shift_s`: how far
        the node should move its next heartbeat so that heartbeats spread evenly over the period
        (repulsive Kuramoto coupling through the coordinator's PhaseBoard; docs/network.md)."""
        n, t, prm = tx.node(node), now_ms(), tx.params
        gap = t - n.last_heartbeat_ms
        pending, uptime = n.uptime_pending, n.uptime_s
        if n.last_heartbeat_ms and 0 < gap <= 2 * prm.heartbeat_s * 1000:
            pending += gap
            uptime += gap / 1000
        paid_ms = pending // 60_000 * 60_000
        if paid_ms:
            tx.issue("earn", node, economy.uptime_bonus(paid_ms / 1000), "uptime")
            pending -= paid_ms
        tx.update_node(node, last_heartbeat_ms=t, last_seen_ms=t, uptime_pending=pending, uptime_s=uptime)
        out = self._standing(tx, node)
        board = self._board(prm)
        if board is not None:  # spread heartbeats: tell the node how far to move its next one
            adv = board.observe(node, t / 1000.0)
            out.update(phase=round(adv.phase, 6), phase_shift_s=round(adv.shift_s, 6),
                       phase_order=round(adv.order, 6), phase_nodes=adv.nodes)  # fmt: skip
        return out

    def _board(self, prm: Any) -> PhaseBoard | None:
        """The heartbeat phase board for the current parameters (rebuilt when they change)."""
        if prm.phase_coupling <= 0:
            self.phases = None
        elif self.phases is None or (self.phases.period_s, self.phases.coupling) != (prm.heartbeat_s, prm.phase_coupling):
            self.phases = PhaseBoard(prm.heartbeat_s, prm.phase_coupling)
        return self.phases

    def penalize(self, node: str, offence: str) -> None:
        with self.store.tx() as tx:
            if tx.conn.execute(sa.select(db.nodes.c.id).where(db.nodes.c.id == node)).first():
                tx.penalize(node, offence)

    def mint(self, tx: Tx, account: str, amount: int, note: str) -> dict[str, Any]:
        if amount <= 0:
            raise BadMessage("amount must be a positive number of micro-credits")
        e = tx.issue("mint", account, amount, f"grant:{note}"[:200])
        return {"account": account, "seq": e.seq, "balance": self.store.ledger.balance(account)}

    # ---- leases -------------------------------------------------------------------------------
    def expire(self, tx: Tx) -> int:
        a, t = db.assignments.c, db.tasks.c
        rows = tx.conn.execute(
            sa.select(a.id, a.task, a.node).where((a.status == "running") & (a.deadline_ms < now_ms()))
        ).all()
        for r in rows:
            tx.conn.execute(db.assignments.update().where(a.id == r.id).values(status="expired"))
            tx.conn.execute(db.tasks.update().where(t.id == r.task).values(active=t.active - 1))
            tx.penalize(r.node, "timeout")
        cutoff = now_ms() - int(2 * tx.params.clock_skew_s * 1000)
        tx.conn.execute(db.nonces.delete().where(db.nonces.c.ts < cutoff))
        return len(rows)

    def lease(self, tx: Tx, node: str) -> dict[str, Any] | None:
        self.expire(tx)
        prm, n = tx.params, tx.node(node)
        tx.update_node(node, last_seen_ms=now_ms())
        if n.reputation < prm.min_reputation:
            raise Forbidden(
                f"{node} has reputation {n.reputation:.3f}, below the {prm.min_reputation} needed for work; "
                "it recovers only through valid results, so this node key is out"
            )
        staked = self.store.ledger.account(node).staked(self.me)
        if prm.admission == "staked" and staked < prm.join_stake:
            raise Forbidden(f"{node} holds {staked} micro-credits of stake; {prm.join_stake} are needed for work")
        t, j, a = db.tasks.c, db.jobs.c, db.assignments.c
        # distinct nodes per task: never a second live replica on the same node (an expired lease, e.g.
        # after a crash, may be retried by the same node; a failed one is not offered again)
        mine = sa.select(a.id).where(
            (a.task == t.id) & (a.node == node) & a.status.in_(("running", "submitted", "failed", "cancelled"))
        ).exists()
        query = (
            sa.select(t.id, t.active, t.needed, t.job, t.inputs, t.units, t.syms, j.artifact, j.variant, j.priority)
            .select_from(db.tasks.join(db.jobs, t.job == j.id))
            .where((t.status == "open") & (t.active < t.needed) & ~mine)
            .order_by(j.priority.desc(), j.created_ms, t.active.desc(), t.idx)
            .limit(CANDIDATES)
        )  # fmt: skip
        cands = tx.conn.execute(query).all()
        if not cands:
            return None
        c = cands[self.rng.randrange(len(cands))]
        held, warm = self.growth.preferred(node) if prm.growth_period_s > 0 else (set(), set())
        if warm and c.artifact not in held:  # a cold pick: a first replica of a warm artifact instead ...
            steered = self._first_replicas(tx, query.where(j.artifact.in_(sorted(warm)) & (t.active == 0)))
            if steered and steered[0].priority >= c.priority:  # ... if one waits at the same priority
                c = steered[self.rng.randrange(len(steered))]
        needed = c.needed
        if c.active == 0 and not self._submitted(tx, c.id):
            needed = target_replicas(n.streak, prm, self.rng.random)
        aid = "as-" + os.urandom(12).hex()
        leased = now_ms()
        deadline = leased + int(prm.lease_s * 1000)
        tx.conn.execute(
            db.assignments.insert().values(
                id=aid, task=c.id, node=node, leased_ms=leased, deadline_ms=deadline, status="running"
            )
        )
        tx.conn.execute(db.tasks.update().where(t.id == c.id).values(active=t.active + 1, needed=needed))
        return {
            "assignment": aid, "task": c.id, "job": c.job, "artifact": c.artifact, "variant": c.variant,
            "inputs": json.loads(c.inputs), "units": c.units, "deadline_ms": deadline, "lease_s": prm.lease_s,
        }  # fmt: skip

    @staticmethod
    def _first_replicas(tx: Tx, query: Any) -> list[Any]:
        """The rows of `query` (tasks nobody runs now) that nobody has submitted a result for either:
        first replicas, not checkers. Filtered here, by the tasks' index: as a correlated subquery
        SQLite scanned every submitted assignment per task (11 ms per lease at 720 results)."""
        rows = tx.conn.execute(query).all()
        if not rows:
            return rows
        a = db.assignments.c
        found = tx.conn.execute(sa.select(a.task, a.status).where(a.task.in_([r.id for r in rows]))).all()
        checked = {task for task, status in found if status == "submitted"}
        return [r for r in rows if r.id not in checked]

    @staticmethod
    def _submitted(tx: Tx, task: str) -> list[Any]:
        a = db.assignments.c
        return tx.conn.execute(
            sa.select(a.id, a.node, a.hash, a.envelope, a.outputs)
            .where((a.task == task) & (a.status == "submitted")).order_by(a.submitted_ms)
        ).all()  # fmt: skip

    def fail(self, tx: Tx, node: str, assignment: str, reason: str) -> dict[str, Any]:
        a, t = db.assignments.c, db.tasks.c
        row = self._assignment(tx, node, assignment)
        if row.status != "running":
            raise Conflict(f"assignment {assignment} is {row.status}, not running", offence="duplicate")
        tx.conn.execute(db.assignments.update().where(a.id == assignment).values(status="failed", verdict=reason[:16]))
        tx.conn.execute(db.tasks.update().where(t.id == row.task).values(active=t.active - 1))
        fails = tx.conn.execute(
            sa.select(sa.func.count()).where((a.task == row.task) & (a.status == "failed"))
        ).scalar()
        if fails >= tx.params.max_replicas:  # nobody can run it: give up rather than loop forever
            task = tx.conn.execute(sa.select(db.tasks).where(t.id == row.task)).one()
            self._close_task(tx, task, "failed", None, None)
        return {"status": "failed", "assignment": assignment}

    def _assignment(self, tx: Tx, node: str, assignment: str) -> Any:
        row = tx.conn.execute(sa.select(db.assignments).where(db.assignments.c.id == assignment)).first()
        if row is None:
            raise UnknownObject(f"unknown assignment {assignment}", offence="malformed")
        if row.node != node:
            raise Forbidden(f"assignment {assignment} belongs to another node", offence="forged")
        return row

    # ---- results ------------------------------------------------------------------------------
    def submit(self, tx: Tx, env: Envelope) -> dict[str, Any]:
        p, node = env.payload, env.sender
        row = self._assignment(tx, node, p["assignment"])
        if row.task != p["task"]:
            raise BadMessage(f"assignment {row.id} is for task {row.task}, not {p['task']}", offence="malformed")
        if row.status == "submitted":
            if row.hash == p["hash"]:  # a retry after a lost answer: already counted, nothing changes
                return {"status": "accepted", "duplicate": True, "assignment": row.id}
            raise Conflict(f"assignment {row.id} already has a different result", offence="duplicate")
        if row.status == "cancelled":
            raise LateResult(f"task {row.task} was decided before this result arrived; nothing is owed")
        if row.status == "failed":
            raise Conflict(f"assignment {row.id} was reported failed by this node", offence="duplicate")
        if row.status == "expired" or now_ms() > row.deadline_ms:
            raise LateResult(f"the lease on {row.id} expired before the result arrived", offence="late")
        task = tx.conn.execute(sa.select(db.tasks).where(db.tasks.c.id == row.task)).one()
        job = tx.conn.execute(sa.select(db.jobs).where(db.jobs.c.id == task.job)).one()
        manifest = self.catalog.manifest(job.artifact)
        self._check_outputs(p, manifest, json.loads(task.syms), task.units, tx.params.max_task_bytes)
        a = db.assignments.c
        tx.conn.execute(
            db.assignments.update().where(a.id == row.id).values(
                status="submitted", hash=p["hash"], envelope=json.dumps({"payload": env.text, "sig": b64e(env.sig)}),
                outputs=json.dumps(p["outputs"], separators=(",", ":")).encode(), submitted_ms=now_ms(),
            )
        )  # fmt: skip
        verdict = self._settle(tx, task, job)
        return {"status": "accepted", "assignment": row.id, "task": task.id, "verdict": verdict}

    @staticmethod
    def _check_outputs(p: dict[str, Any], manifest: Any, syms: dict[str, int], units: int, limit: int) -> None:
        try:
            named = tensors.decode(p["outputs"], "outputs", limit)
        except BadMessage as e:
            raise type(e)(str(e), offence="malformed") from None
        want = [(n, dt, shape) for n, dt, shape in output_shapes(manifest, syms)]
        got = [(n, a.dtype.name, list(a.shape)) for n, a in named]
        if got != want:
            raise BadMessage(f"outputs must be {want} (name, dtype, shape), got {got}", offence="malformed")
        if tensors.output_hash(named) != p["hash"]:
            raise BadMessage("the result hash does not match the outputs sent", offence="malformed")
        if p["units"] != units:
            raise BadMessage(f"work units {p['units']} claimed, the task is {units}", offence="malformed")

    def _settle(self, tx: Tx, task: Any, job: Any) -> str:
        prm, a, t = tx.params, db.assignments.c, db.tasks.c
        results = self._submitted(tx, task.id)
        running = tx.conn.execute(
            sa.select(sa.func.count()).where((a.task == task.id) & (a.status == "running"))
        ).scalar()
        quorum = 1 if task.needed == 1 else 2
        pending = max(running, task.needed - len(results))  # replicas asked for but not yet leased count too
        v = decide([(r.node, r.hash) for r in results], pending, quorum, prm.max_replicas)
        if v.state == "wait":
            return "pending"
        if v.state == "more":
            tx.conn.execute(db.tasks.update().where(t.id == task.id).values(needed=min(prm.max_replicas, task.needed + 1)))
            return "replicating"
        if v.state == "inconclusive":
            for r in results:
                tx.conn.execute(db.assignments.update().where(a.id == r.id).values(verdict="inconclusive"))
            self._close_task(tx, task, "failed", None, None)
            return "inconclusive"
        winners = [r for r in results if r.hash == v.canonical]
        losers = [r for r in results if r.hash != v.canonical]
        mult = economy.contribution_multiplier(economy.cpu_hours(self._network_units(tx)))
        for r in winners:
            tx.conn.execute(db.assignments.update().where(a.id == r.id).values(verdict="canonical"))
            credit = economy.task_credit(task.units, job.price, mult)
            tx.issue("earn", r.node, credit, f"task:{task.id}")
            tx.reward(r.node, task.units)
            staked = self.store.ledger.account(r.node).staked(self.me)
            bond = economy.escrow_from_earning(credit, staked, prm.join_stake)
            if bond:
                tx.issue("stake", r.node, bond, "escrow")
        for r in losers:
            tx.conn.execute(db.assignments.update().where(a.id == r.id).values(verdict="wrong"))
            self._slash(tx, r, task, winners)
        cost = economy.task_cost(task.units, job.price, job.priority) * len(winners)
        ref = f"job:{job.id}"
        cost = min(cost, self.store.ledger.reservation(self.me, job.owner, ref))
        if cost:
            tx.issue("spend", job.owner, cost, ref)
        tx.conn.execute(db.jobs.update().where(db.jobs.c.id == job.id).values(spent=db.jobs.c.spent + cost))
        self._close_task(tx, task, "done", v.canonical, winners[0].outputs)
        return "canonical"

    def _slash(self, tx: Tx, loser: Any, task: Any, winners: list[Any]) -> None:
        tx.penalize(loser.node, "wrong")
        doc = {
            "kind": "lost-quorum", "coordinator": self.me, "task": task.id, "node": loser.node,
            "result": json.loads(loser.envelope), "canonical": [json.loads(w.envelope) for w in winners],
        }  # fmt: skip
        body = canonical(doc).decode()
        h = hashlib.sha256(body.encode()).hexdigest()
        if not tx.conn.execute(sa.select(db.evidence.c.hash).where(db.evidence.c.hash == h)).first():
            tx.conn.execute(db.evidence.insert().values(hash=h, body=body, created_ms=now_ms()))
        staked = self.store.ledger.account(loser.node).staked(self.me)
        cut = economy.slash_amount(staked, tx.params.slash_rate)
        if cut:
            tx.issue("slash", loser.node, cut, f"task:{task.id}", evidence=h)

    def _close_task(self, tx: Tx, task: Any, status: str, canonical_hash: str | None, outputs: Any) -> None:
        a, t, j = db.assignments.c, db.tasks.c, db.jobs.c
        tx.conn.execute(
            db.assignments.update().where((a.task == task.id) & (a.status == "running")).values(status="cancelled")
        )
        tx.conn.execute(
            db.tasks.update().where(t.id == task.id).values(
                status=status, canonical=canonical_hash, outputs=outputs, done_ms=now_ms(), active=0
            )
        )  # fmt: skip
        col = j.done if status == "done" else j.failed
        tx.conn.execute(db.jobs.update().where(j.id == task.job).values({col: col + 1}))
        job = tx.conn.execute(sa.select(db.jobs).where(j.id == task.job)).one()
        if job.done + job.failed >= job.n_tasks and job.status != "done":
            left = self.store.ledger.reservation(self.me, job.owner, f"job:{job.id}")
            if left:
                tx.issue("release", job.owner, left, f"job:{job.id}")
            tx.conn.execute(db.jobs.update().where(j.id == job.id).values(status="done", finished_ms=now_ms()))

    @staticmethod
    def _network_units(tx: Tx) -> int:
        return int(tx.conn.execute(sa.select(sa.func.coalesce(sa.func.sum(db.nodes.c.work_units), 0))).scalar())

