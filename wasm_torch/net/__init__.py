"""The edge compute network: coordinators hand out tasks of signed artifacts to Python and browser
nodes, validate replicas by hash, and pay in credits kept in a CRDT ledger (docs/network.md).

    wire.py        envelopes, strict JSON, keys          tensors.py   tensor bundles, canonical output hash
    crdt.py        G-counter, PN-counter                 ledger.py    signed entries, never-negative ledger
    merkle.py      Merkle roots for anti-entropy         gossip.py    coordinator <-> coordinator exchange
    economy.py     every formula (credit, price, stake)   params.py    the network parameters record
    quorum.py      exact validation by hash              work.py      work units, bound shapes, build variant
    db.py          tables (SQLite / PostgreSQL)          store.py     transactions, writer lock, ledger in memory
    jobs.py        artifacts and jobs (server side)      scheduler.py leases, results, settlement
    coordinator.py the FastAPI app                       node.py      the Python node
    client.py      HTTP with retries                     submit.py    submit / watch / fetch a job
    pipeline_job.py a partitioned model (compile stages=k) run as a pipeline of stage jobs
    sim.py         seeded simulation of validation and credit at scale (bench/net_sim.py)
    governance.py  signed proposals and votes in the ledger, tally at a stake snapshot, execute once
    agree.py       Byzantine agreement among coordinators on each proposal (spikes over gossip)
    share.py       private pattern sharing: DP summaries in ML-KEM-768 + AES-256-GCM boxes (node side)
    mailbox.py     the coordinator's mailbox for those boxes
    cli.py         `wasm-torch coordinator | node | ledger | job`
    web/           browser node page + worker, coordinator progress page

Never imports torch or the compiler: a coordinator or node host needs numpy, wasmtime and the
serve extras (FastAPI, uvicorn, cryptography) plus SQLAlchemy (and psycopg for PostgreSQL).
"""
