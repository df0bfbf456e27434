"""Visual-token pruning inside the LLM (FastV, FrameFusion, STTM, ...) through removable decoder-layer hooks.

    span = VisualSpan(start=14, frames=8, grid=(14, 14), layout="onevision")
    out = prefill_pruned(llm.model, inputs_embeds, span, ratio=0.9, method="fastv")
    answer = decode(llm.model, out.last_logits, out.cache, config, eos_ids, next_position=out.next_position)

The machinery (hooks.py, attention.py, span.py, prefill.py) is shared; each method is one file of `methods/` that
declares itself to registry.py.
"""
