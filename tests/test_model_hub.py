"""fpcli.model.hub: cache first, one error mapping for hub failures, downloads with byte progress (hub faked)."""

from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
from huggingface_hub import constants
import pytest
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

from fpcli.model import ModelError
from fpcli.model.llava.convert_keys import ConversionError
from fpcli.model.hub import require_safetensors, snapshot

REPO = "org/model"
HINT = f"download it with `hf download {REPO} --exclude '*.bin'` where the hub is reachable, or pass a local directory"


class FakeHub:
    """snapshot_download / hf_hub_download as huggingface_hub behaves: a cache lookup, a dry-run listing, files."""

    def __init__(self, tmp_path: Path, files=(), local=None, listing=None):
        self.snapshot_dir = tmp_path / "snapshot"
        self.files = [SimpleNamespace(filename=name, file_size=size, will_download=True, commit_hash="c0ffee")
                      for name, size in files]  # fmt: skip
        self.local = local  # exception raised by the cache lookup (default: not cached until downloaded)
        self.listing = listing  # exception raised by the dry run
        self.downloaded: list[str] = []

    def snapshot_download(self, repo_id, *, local_files_only=False, dry_run=False, **kwargs):
        if local_files_only:
            if self.local is not None:
                raise self.local
            if not self.downloaded:
                raise LocalEntryNotFoundError("not cached")
            return str(self.snapshot_dir)
        assert dry_run
        if self.listing is not None:
            raise self.listing
        return self.files

    def hf_hub_download(self, repo_id, filename, *, revision, cache_dir, tqdm_class):
        bar = tqdm_class(total=0)
        bar.update(1)
        self.downloaded.append(filename)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def install(**kwargs) -> FakeHub:
        fake = FakeHub(tmp_path, **kwargs)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
        return fake

    return install


def test_download_reports_size_and_byte_progress(hub, tmp_path):
    fake = hub(files=[("config.json", 1_000), ("model.safetensors", 2_500_000)])
    messages, steps = [], []
    path = snapshot(REPO, ["*.json", "*.safetensors"], notify=messages.append,
                    progress=lambda stage, done, total: steps.append((stage, done, total)))  # fmt: skip
    assert path == fake.snapshot_dir and fake.downloaded == ["config.json", "model.safetensors"]
    assert messages == [f"Downloading {REPO}: 2 files, 2.5 MB, into {tmp_path / 'cache'}"]
    total = 2_501_000
    assert steps == [("download", 1, total), ("download", 1_000, total), ("download", 1_001, total),
                     ("download", total, total)]  # fmt: skip


def test_cached_snapshot_needs_no_hub(hub, tmp_path):
    fake = hub(listing=AssertionError("the hub must not be asked"))
    fake.downloaded.append("already")
    assert snapshot(REPO, ["*"]) == fake.snapshot_dir


def test_permission_error_is_not_reported_as_not_cached(hub, tmp_path):
    hub(local=PermissionError(13, "Permission denied", str(tmp_path / "cache")))
    with pytest.raises(ModelError) as err:
        snapshot(REPO, ["*"])
    assert str(err.value) == f"cannot read the Hugging Face cache ({tmp_path / 'cache'}): Permission denied"


@pytest.mark.parametrize(("listing", "message", "hint"), [
    (ConnectionError("Failed to resolve huggingface.co\nmore"),
     f"model {REPO} is not in the local Hugging Face cache ({{cache}}) and the hub is unreachable "
     "(Failed to resolve huggingface.co)", HINT),
    (GatedRepoError("401 gated", response=SimpleNamespace(headers={}, status_code=401, request=None)),
     f"model {REPO} is gated on the Hugging Face hub", "accept its licence on the hub and run `hf auth login`"),
])  # fmt: skip
def test_hub_failures_map_to_one_line_errors(hub, tmp_path, listing, message, hint):
    hub(listing=listing)
    with pytest.raises(ConversionError) as err:
        snapshot(REPO, ["*"], error=ConversionError)
    assert str(err.value) == message.format(cache=tmp_path / "cache") and err.value.hint == hint


def test_pickle_only_repo_is_refused_before_downloading(hub):
    fake = hub(files=[("config.json", 10), ("pytorch_model.bin", 10)])
    with pytest.raises(ModelError, match=f"^model {REPO} publishes no safetensors weights; forestprune loads"):
        snapshot(REPO, ["*"])
    assert fake.downloaded == []


def test_require_safetensors(tmp_path):
    with pytest.raises(ModelError, match=r"has no model weights \(model\.safetensors or model\.safetensors\.index"):
        require_safetensors(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ConversionError, match=r"has only pickle weights \(\.bin/\.pt\); forestprune loads"):
        require_safetensors(tmp_path, ConversionError)
    (tmp_path / "model.safetensors").write_bytes(b"")
    require_safetensors(tmp_path)
