from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (CI provides ../shared)")
    return path


def tiny_mdm(folder: Path) -> dict:
    """A tiny CLIP-conditioned MDM checkpoint under ``folder/ckpt`` (args.json, weights, Mean/Std) and tiny
    CLIP weights ``folder/clip.pt``: end-to-end runs without downloads."""
    import numpy as np
    import torch

    from motion_loop.mdm import MDM, MDMConfig, save_model
    from motion_loop.text_encoders import clip_modules

    torch.manual_seed(0)
    config = MDMConfig(latent_dim=32, layers=1, ff_size=64, num_heads=2, mask_frames=True,
                       diffusion_steps=50, max_motion_length=60)
    model_path = save_model(folder / "ckpt" / "model000000007.pt", MDM(config))
    rng = np.random.default_rng(0)
    np.save(folder / "ckpt" / "Mean.npy", (0.1 * rng.standard_normal(263)).astype(np.float32))
    np.save(folder / "ckpt" / "Std.npy", (0.05 + 0.1 * rng.random(263)).astype(np.float32))
    clip_model, _ = clip_modules()
    clip = clip_model.CLIP(embed_dim=512, image_resolution=32, vision_layers=1, vision_width=64,
                           vision_patch_size=16, context_length=77, vocab_size=49408,
                           transformer_width=64, transformer_heads=1, transformer_layers=1)
    clip_model.convert_weights(clip)
    torch.save(clip.state_dict(), folder / "clip.pt")
    return {"model": model_path, "clip": folder / "clip.pt", "folder": folder}


@pytest.fixture(scope="session", autouse=True)
def _session_embedding_cache(tmp_path_factory):
    """Module- and session-scoped fixtures, set up before any test's own cache, never see ~/.cache either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTION_LOOP_CACHE", str(tmp_path_factory.mktemp("session_embedding_cache")))
        yield


@pytest.fixture(autouse=True)
def _own_embedding_cache(tmp_path_factory, monkeypatch):
    """Every test starts with an empty text-embedding cache of its own (motion_loop.text_cache), never the
    user's ~/.cache: what a test encodes is computed, and nothing leaks from one test to another."""
    monkeypatch.setenv("MOTION_LOOP_CACHE", str(tmp_path_factory.mktemp("embedding_cache")))
