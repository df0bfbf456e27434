"""Qwen2.5-VL and Qwen3-VL with visual-token pruning on their merged tokens, keeping each kept token's M-RoPE position.

    llm = load_model("qwen2.5-vl-3b")              # or a local dir / hub id: detected from config.json
    clip = sample_clip("clip.mp4", llm.layout)     # fpcli.model.sampling: 2 fps, at most 768 frames, at least 4
    result = llm.answer(clip, "What happens?", ratio=0.9)

Modules: arch (what differs between the two), video_input (resize, normalise, patch order), encode (vision tower
in chunks of temporal groups), prompt (chat template, video tokens, Qwen3-VL timestamps), positions
(get_rope_index, kept columns, DeepStack), generate (the language model as fpcli.model.generate calls it),
session, inllm and inllm_session (fastv, framefusion, sttm inside the LLM), model, loading.
"""
