"""JAX arrays (skipped without JAX): read in place through DLPack, results
come back as JAX arrays with the NumPy path's bytes."""
import numpy as np
import pytest

import kiln
from conftest import same_bytes, zipf_rows

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")


def test_jax_arrays_in_and_out():
    x = zipf_rows(5, 700, 40)
    temps = np.array([0.0, 0.5, 1.0, 1.5, 2.0], np.float32)
    a = kiln.sample(jnp.asarray(x), temperature=jnp.asarray(temps), top_k=50, seed=3,
                    return_probs=True)
    b = kiln.sample(x, temperature=temps, top_k=50, seed=3, return_probs=True)
    assert isinstance(a.tokens, jax.Array)
    assert same_bytes(np.asarray(a.tokens), b.tokens)
    assert same_bytes(np.asarray(a.probs), b.probs)


def test_jax_bfloat16():
    x = jnp.asarray(zipf_rows(3, 300, 41)).astype(jnp.bfloat16)
    a = kiln.sample(x, top_p=0.8, seed=1).tokens
    b = kiln.sample(x.astype(jnp.float32), top_p=0.8, seed=1).tokens
    assert same_bytes(np.asarray(a), np.asarray(b))
