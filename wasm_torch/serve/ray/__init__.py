"""Scale-out on Ray Serve (the optional `wasm-torch[ray]` extra). Import `env` before `ray`."""
