"""`SessionPool`: the sessions of one encoded clip, one per pruning setting, the clip's cost counted once.

Every caller that answers several questions about a clip (ask and batch through fpcli.run, eval through
fpcli.eval.loop, the Ray workers through both) asks the pool for a question's session: the first question of a
setting starts it (`VideoLLM.start`: pruning, and the prefix prefill on its first question), later ones reuse it.
The first session gets the features as they are, later ones `features.reused()`, so the decode, encode and cache
load of the clip are on one result only and a clip's results add up to what it cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from fpcli.model.base import VideoLLM
    from fpcli.model.clip_features import ClipFeatures
    from fpcli.model.session import Session


class SessionPool:
    def __init__(self, llm: VideoLLM, features: ClipFeatures) -> None:
        self.llm = llm
        self.features = features
        self._sessions: dict[tuple, Session] = {}

    def session(self, method: str, ratio: float | None, options: Mapping[str, Any], budget: int | None = None
                ) -> Session:
        """The session of (method, ratio or budget, options), started on first use (ModelInputError/ValueError for
        a setting the model cannot run, as `VideoLLM.start`)."""
        key = (method, None if ratio is None else float(ratio), budget, repr(sorted(options.items())))
        if key not in self._sessions:
            features = self.features.reused() if self._sessions else self.features
            self._sessions[key] = self.llm.start(features, ratio=ratio, method=method, options=dict(options),
                                                 budget=budget)
        return self._sessions[key]
