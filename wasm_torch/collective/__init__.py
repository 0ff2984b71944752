"""Collective behaviour of the edge network: the dynamics, as pure functions and small state machines
(numpy, scipy, networkx; nothing else of wasm-torch but its errors). wasm_torch/net/ wires them into
coordinators and nodes; docs/network.md ("Collective behaviour") has the formulas and the figures.

    kuramoto.py    Kuramoto oscillators: r(K) against theory; PhaseBoard, the repulsive all-harmonic
                   coupling that spreads node heartbeats over the period (coordinator + node)
    grayscott.py   Gray-Scott reaction-diffusion on graphs: Turing patterns; plan_growth, where to
                   place replicas, which nodes specialise, what to prune
    agreement.py   spike-based Byzantine binary agreement (integrate-and-fire thresholds f + 1, 2f + 1;
                   n >= 3f + 1), and its seeded simulation with Byzantine strategies
    voting.py      softmax-over-stakes (temperature) and stake-proportional weights; the tally
    privacy.py     differential privacy: clipping, Laplace noise, the per-record budget accountant
    mutual.py      models of peers (latency, availability, honesty) and of oneself; peer choice
    errors.py      CollectiveError, PrivacyBudgetExceeded
"""
