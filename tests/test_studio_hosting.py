"""Hosted mode (a public Space, or ``--public``): no server path typed in a box is used or probed, no absolute
server path reaches a page; on one's own machine the same boxes keep their freedoms."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from diffloss.prior import PriorLoadError
from studio import hosting, restorers, train_tab
from studio.models import SHIPPED_PRIOR
from studio.train_settings import TrainSettings
from tests.studio_helpers import make_world


def test_hosted_mode_is_on_for_a_space_or_public_and_off_on_ones_own_machine(local, monkeypatch):
    assert not hosting.is_hosted() and hosting.launch_options() == {}
    monkeypatch.setenv("SPACE_ID", "a/b")
    assert hosting.is_hosted() and hosting.launch_options()["max_file_size"] == hosting.MAX_UPLOAD
    monkeypatch.delenv("SPACE_ID")
    hosting.enable_public()
    assert hosting.is_hosted()


@pytest.mark.parametrize("text", ["/", "/etc/passwd", "/root", "~/x", "../pretrained/prior", "runs/../etc", "a/b/c",
                                  "pretrained", "x" * 300 + "/y", "owner/name/"])
def test_a_hub_id_is_checked_by_its_form_and_paths_are_refused(text):
    with pytest.raises(ValueError, match="not a hub id"):
        hosting.check_hub_id(text)


def test_valid_hub_ids_pass():
    assert hosting.check_hub_id(" google/ddpm-cifar10-32 ") == "google/ddpm-cifar10-32"
    assert hosting.hosted_prior_source("", SHIPPED_PRIOR) is None
    assert hosting.hosted_prior_source(SHIPPED_PRIOR, SHIPPED_PRIOR) is None


def test_hosted_prior_box_never_probes_the_server(tmp_path, hosted, monkeypatch):
    """An existing and a missing folder get the same answer, and no path is looked at to give it."""
    world = make_world(tmp_path)
    looked = []
    monkeypatch.setattr(Path, "exists", lambda self: looked.append(self) or True)
    messages = set()
    for text in ("/etc", "/definitely/missing", str(world.root / "pretrained" / "prior"), "/"):
        with pytest.raises(PriorLoadError, match="never a path on the server") as err:
            world.registry.load_prior(text)
        messages.add(str(err.value).replace(repr(text.strip()[:80]), "X"))
    assert len(messages) == 1 and looked == []


def test_hosted_hub_prior_is_fetched_with_a_size_cap_then_loaded(tmp_path, hosted, monkeypatch):
    world = make_world(tmp_path)
    fetched = []
    monkeypatch.setattr(hosting, "fetch_hub_prior",
                        lambda repo_id: fetched.append(repo_id) or world.root / "pretrained" / "prior")
    prior = world.registry.load_prior("someone/tiny-prior")
    assert fetched == ["someone/tiny-prior"] and prior.num_timesteps > 1
    assert world.registry.load_prior("").num_timesteps == prior.num_timesteps  # the shipped one still works


def test_a_hub_prior_over_the_cap_is_not_downloaded(monkeypatch):
    import huggingface_hub

    downloads = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: downloads.append(a) or "/x")
    files = [SimpleNamespace(rfilename="unet/diffusion_pytorch_model.safetensors", size=400 * 2**20),
             SimpleNamespace(rfilename="unet/config.json", size=1000),
             SimpleNamespace(rfilename="big.ckpt", size=10 * 2**30)]  # not needed, not counted
    api = SimpleNamespace(model_info=lambda repo_id, files_metadata: SimpleNamespace(siblings=files))
    with pytest.raises(ValueError, match="weighs 400 MB, more than the 300 MB"):
        hosting.fetch_hub_prior("someone/huge", api=api)
    assert downloads == []
    files[0].size = 20 * 2**20
    assert hosting.fetch_hub_prior("someone/huge", api=api) == Path("/x") and len(downloads) == 1


def test_local_prior_box_keeps_folders_but_a_typed_root_is_not_walked(tmp_path, local, monkeypatch):
    world = make_world(tmp_path)
    assert world.registry.load_prior(str(world.root / "pretrained" / "prior")).num_timesteps > 1  # a local folder
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: pytest.fail(f"walked {self}"))
    with pytest.raises(PriorLoadError, match="holds no diffusers model"):
        world.registry.load_prior("/")


def test_public_text_rewrites_every_absolute_path_and_nothing_else(tmp_path):
    repo, runs = tmp_path / "repo", tmp_path / "data" / "runs"
    roots = {repo: "", runs: "runs/"}
    text = (f"saved in `{runs}/studio-noise-1/photos`; prior `{repo}/pretrained/prior`; upload "
            f"/tmp/gradio/ab12/photo.png failed; runs in `{runs}`. See https://huggingface.co/x/y, "
            "step 5/5, L2/DiffLoss, 1e-3/2, ~/notes")
    out = hosting.public_text(text, roots)
    assert str(tmp_path) not in out and "/tmp" not in out
    assert "`runs/studio-noise-1/photos`" in out and "`pretrained/prior`" in out and "upload photo.png failed" in out
    assert "runs in `runs`" in out
    assert "https://huggingface.co/x/y" in out and "step 5/5" in out and "L2/DiffLoss" in out and "1e-3/2" in out


def test_hosted_training_refuses_a_server_folder_and_uses_the_shipped_examples(tmp_path, hosted):
    world = make_world(tmp_path)
    with pytest.raises(gr.Error, match="a folder on the server cannot be used") as err:
        next(train_tab.train_pair(TrainSettings("noise", 1, 1, 16, 1e-3, 0.05, 0.1, 0, 99, 0, "", "/etc",
                                                start=restorers.FRESH_START), registry=world.registry))
    assert "/etc" not in err.value.message
    *_, (status, _, archive, *_) = train_tab.train_pair(TrainSettings(
        "noise", 1, 1, 16, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", start=restorers.FRESH_START), registry=world.registry)
    # the world's examples: 3 clean photos, said as what they are (they used to be called "3 uploaded photos")
    assert status.startswith("**Done**") and "the arms train on the 3 clean photos shipped" in status
    assert "name a folder" not in status  # there is no folder box on a hosted studio
    assert archive.endswith(".zip")


def test_a_local_train_run_still_takes_a_folder_on_this_machine(tmp_path, local):
    world = make_world(tmp_path)
    *_, (status, *_) = train_tab.train_pair(TrainSettings(
        "noise", 1, 1, 16, 1e-3, 0.05, 0.1, 0, 99, 0, "", str(world.clean), start=restorers.FRESH_START),
        registry=world.registry)
    assert status.startswith("**Done**")


def test_guarded_handlers_send_no_server_path_in_text_outputs_or_errors(tmp_path):
    roots = {tmp_path: ""}

    def gen(x):
        yield f"at {tmp_path}/a/b.txt", str(tmp_path / "file.zip")
        raise gr.Error(f"cannot read {tmp_path}/secret/x.png")

    def plain(x):
        raise OSError(f"[Errno 2] No such file: '/srv/private/{x}'")

    wrapped = hosting.guarded(gen, [True, False], roots)
    it = wrapped(1)
    text, file = next(it)
    assert text == "at a/b.txt" and file == str(tmp_path / "file.zip")  # a file output keeps its real path
    with pytest.raises(gr.Error) as err:
        next(it)
    assert err.value.message == "cannot read secret/x.png"
    with pytest.raises(gr.Error) as err:
        hosting.guarded(plain, [True], roots)("k")
    assert "/srv" not in err.value.message and "k" in err.value.message


def test_hosted_over_http_no_run_file_is_served_and_no_server_path_is_shown(tmp_path):
    """A visitor of a hosted studio: a run's uploaded photo and checkpoint are not reachable by URL (runs/ is no
    static path), and the status line, the page's markdown and error messages name no absolute server path."""
    import httpx
    from gradio_client import Client, handle_file

    from studio import upload
    from tests.studio_helpers import launched_studio

    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        c = Client(url, verbose=False)
        photos = [handle_file(str(p)) for p in sorted(world.clean.glob("*.png"))]
        status, _, archive, *_ = c.predict("noise", 1, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", 0,
                                       restorers.FRESH_START, photos, api_name="/train")
        assert status.startswith("**Done**") and str(archive).endswith(".zip")
        assert str(tmp_path) not in status and "saved in `runs/studio-noise-" in status
        (run,) = world.registry.runs.iterdir()
        base = url.rstrip("/")
        assert httpx.get(f"{base}/gradio_api/file={world.photo}").status_code != 200  # not an example: not served
        example = next(world.clean.glob("*.png"))
        assert httpx.get(f"{base}/gradio_api/file={example}").status_code == 200  # the route works: examples are
        # a finished hosted run keeps only its models and zip (photos and checkpoints are deleted): neither is served
        assert not (run / "photos").exists() and not (run / "l2" / "checkpoint").exists()
        for private in (run / "l2" / "model" / "model.safetensors", next(run.glob("*.zip"))):
            assert private.is_file()
            answer = httpx.get(f"{base}/gradio_api/file={private}")
            assert answer.status_code in (403, 404) and b"safetensors" not in answer.content[:20]
        page = httpx.get(f"{base}/config").json()
        texts = [c["props"].get("value") for c in page["components"] if c.get("type") in ("markdown", "textbox")]
        assert not any(isinstance(t, str) and str(tmp_path) in t for t in texts)
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        l2, dl = world.labels()
        with pytest.raises(Exception, match="Could not read") as err:
            c.predict(handle_file(str(bad)), "noise", upload.MODES[0], 0, l2, dl, 0.5, 0.5, 32, api_name="/compare")
        assert "/tmp" not in str(err.value) and "broken.png" in str(err.value)
        with pytest.raises(Exception, match="never a path on the server"):
            c.predict("noise", 32, 0, 99, "/etc", 0.05, 0.1, 0.2, 0.1, api_name="/calibrate")


def test_local_over_http_keeps_runs_downloadable(tmp_path, local):
    import app
    from studio.models import set_registry

    world = make_world(tmp_path)
    set_registry(world.registry)
    try:
        assert str(world.registry.runs) in app.allowed_paths()
    finally:
        set_registry(None)


def test_a_hosted_page_has_gradio_delete_uploads_and_served_copies_and_a_local_one_keeps_them(tmp_path, monkeypatch):
    """Uploads are cleaned on a Space: gradio's cache (uploads, served copies) is swept every ten minutes of files
    an hour old (issue 25, Medium 3: a day before); a Train run's own copy of its photos goes when it finishes
    (test_studio_visitors)."""
    import app
    from studio.models import set_registry

    set_registry(make_world(tmp_path).registry)
    try:
        monkeypatch.setenv("SPACE_ID", "someone/studio")
        assert app.build_demo().delete_cache == (600, 3600)
        monkeypatch.delenv("SPACE_ID")
        monkeypatch.delenv(hosting.PUBLIC_ENV, raising=False)
        assert app.build_demo().delete_cache is None
    finally:
        set_registry(None)


def test_app_public_flag_turns_hosted_mode_on_and_the_start_removes_interrupted_saves(tmp_path, local, monkeypatch):
    """``python app.py --public`` as a Space starts (the server itself replaced by a stand-in that records how it
    was launched): hosted mode, its upload limit, no runs/ served, a killed save's temp file removed first."""
    import types

    import app
    from studio import boot, models, train_tab

    world = make_world(tmp_path)
    stale = world.registry.runs / "old" / "l2" / "checkpoint" / ".last.safetensors.999999999-x.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"torn")
    launched = {}

    class Server:
        local_url, share_url = "http://127.0.0.1:1/", None

        def queue(self):
            return self

        def launch(self, **kwargs):
            launched.update(kwargs)

        def block_thread(self):
            launched["blocked"] = True

    monkeypatch.setattr(app, "build_demo", Server)
    monkeypatch.setattr(boot, "stop_on_signals", lambda: None)
    monkeypatch.setattr(train_tab, "stop_for_shutdown", lambda: [])
    monkeypatch.setattr(models.Registry, "warm_up", lambda self: types.SimpleNamespace())
    models.set_registry(world.registry)
    try:
        app.main(["--public", "--port", "1"])
        assert hosting.is_hosted() and launched["blocked"]
        assert launched["max_file_size"] == hosting.MAX_UPLOAD
        assert str(world.registry.runs) not in launched["allowed_paths"]
        assert not stale.exists()
    finally:
        models.set_registry(None)


def test_the_last_handler_of_a_burst_gives_freed_memory_back(monkeypatch):
    """Issue 25, Medium 6: memory never returned (0.56 GB at start, 5.3 GB idle after a burst). The guarded
    handlers count themselves; when the last one running ends (plain or generator, even by an error), the heap is
    trimmed once, not after each of the overlapping ones."""
    import threading

    from diffloss import heap

    trims = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(1) or True)
    release = threading.Event()
    slow = hosting.guarded(lambda: release.wait(5) and "done", [True], {})
    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    quick = hosting.guarded(lambda: "quick", [True], {})
    assert quick() == "quick" and trims == []  # three others still running
    release.set()
    for t in threads:
        t.join()
    assert trims == [1]

    def failing():
        yield "first"
        raise RuntimeError("boom")

    with pytest.raises(gr.Error, match="RuntimeError: boom"):
        list(hosting.guarded(failing, [True], {})())
    assert trims == [1, 1]



# --------------------------------------------------------------------------- uploads per client address (issue 25)
def test_an_address_gets_a_count_and_a_byte_budget_an_hour():
    from studio.upload_limits import AddressLedger, UploadBudget

    ledger = AddressLedger(UploadBudget(max_files=3, max_bytes=100, window_s=3600))
    assert [ledger.admit("1.2.3.4", 10, now=t) for t in (0, 1, 2)] == [None] * 3
    refusal = ledger.admit("1.2.3.4", 10, now=600)
    assert refusal == ("Too many uploads from your address: at most 3 files and 0 MB an hour on this hosted studio; "
                       "try again in 50 minutes.")
    assert ledger.admit("5.6.7.8", 10, now=600) is None  # another address has its own budget
    assert ledger.admit("1.2.3.4", 10, now=3600.5) is None  # the first upload left the window
    heavy = AddressLedger(UploadBudget(max_files=100, max_bytes=100, window_s=3600))
    assert heavy.admit("a", 60, now=0) is None and heavy.admit("a", 60, now=1) is not None  # 120 bytes > 100
    assert heavy.admit("a", 40, now=2) is None  # a refused upload was not counted


def test_on_a_space_the_address_is_the_one_the_hubs_proxy_added(monkeypatch):
    from studio.upload_limits import client_address

    scope = {"client": ("10.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")]}
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert client_address(scope) == "10.0.0.1"  # --public on one's own machine: the peer (a header is not trusted)
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    assert client_address(scope) == "203.0.113.9"  # the first entry is whatever the client wrote


def test_over_http_raw_uploads_from_one_address_are_limited_in_number_and_bytes(tmp_path, monkeypatch):
    """Issue 25, Medium 3: 20 x 49 MB in 15 s with no session. The upload route itself answers 429 past the
    budget (gradio_client's uploads too), 411 without a declared length; a local studio has no such limit."""
    import httpx
    from gradio_client import Client, handle_file

    from studio import upload, upload_limits
    from tests.studio_helpers import launched_studio

    monkeypatch.setattr(upload_limits, "BUDGET", upload_limits.UploadBudget(max_files=3, max_bytes=10 * 2**20))
    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        route = url.rstrip("/") + "/gradio_api/upload"
        answers = [httpx.post(route, files={"files": ("a.png", world.photo.read_bytes())}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        over = httpx.post(route, files={"files": ("a.png", world.photo.read_bytes())})
        assert over.status_code == 429 and "Too many uploads from your address: at most 3 files" in over.text
        chunked = httpx.post(route, content=iter([b"--x\r\n"]), headers={"content-type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 411
        l2, dl = world.labels()
        with pytest.raises(Exception, match="429|Too many uploads"):
            Client(url, verbose=False).predict(handle_file(str(world.photo)), "noise", upload.MODES[0], 0, l2, dl,
                                               0.5, 0.5, 32, api_name="/compare")
    with launched_studio(tmp_path / "local") as (url, world):
        route = url.rstrip("/") + "/gradio_api/upload"
        assert all(httpx.post(route, files={"files": ("a.png", b"x")}).status_code == 200 for _ in range(5))


def test_over_http_a_hosted_studio_serves_the_example_images_not_the_folders_scripts_or_readme(tmp_path):
    """Issue 25, Low 12: examples/ is served whole (its photos are the tabs' examples), with its .py and README."""
    import httpx

    from tests.studio_helpers import launched_studio

    world = make_world(tmp_path / "w")
    (world.clean / "crop_photos.py").write_text("SECRET = 1\n")
    (world.clean / "README.md").write_text("notes\n")
    with launched_studio(tmp_path / "unused", registry=world.registry, hosted=True) as (url, _):
        base = url.rstrip("/") + "/gradio_api/file="
        assert httpx.get(base + str(world.clean / "0.png")).status_code == 200
        for private in ("crop_photos.py", "README.md"):
            answer = httpx.get(base + str(world.clean / private))
            assert answer.status_code in (403, 404) and b"SECRET" not in answer.content


def test_over_http_config_and_api_info_name_no_server_path_but_gradios_own_cache(tmp_path):
    """Issue 25, Low 9, what can be done: gradio 6 names every file it serves by its absolute path in its cache
    (``/gradio_api/file=<path>``; an upload's reply and every FileData carry it back), so those cache paths stay;
    no other absolute path (the repo, runs/, the examples folder, the datasets) is in /config or /gradio_api/info."""
    import re

    import httpx
    from gradio.utils import get_upload_folder

    from tests.studio_helpers import launched_studio

    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        cache = str(Path(get_upload_folder()).resolve())
        for route in ("/config", "/gradio_api/info"):
            text = httpx.get(url.rstrip("/") + route).text.replace("\\\\/", "/")
            paths = set(re.findall(r"(/(?:tmp|work|home|root|usr|data|var|opt|srv|mnt)/[^\"\\s\\\\]*)", text))
            assert paths and all(p.startswith(cache) for p in paths), sorted(p for p in paths if not p.startswith(cache))
            assert str(tmp_path) not in text and str(world.root) not in text


@pytest.mark.parametrize("error, message", [
    (RecursionError("maximum recursion depth exceeded while decoding a JSON array"), "nested too deeply to read"),
    (MemoryError(), "ran out of memory for this request"),
    (TypeError("unhashable type: 'list'\n  a second line\n" + "x" * 1000), "TypeError: unhashable type: 'list' a second line x+\\.\\.\\."),
])
def test_an_unexpected_error_reaches_the_page_as_one_short_line(error, message):
    """Issue 25, Low 7: whatever a handler did not foresee still reaches the page as one short line."""
    def handler():
        raise error

    with pytest.raises(gr.Error, match=message) as caught:
        hosting.guarded(handler, [True], {})()
    assert "\n" not in caught.value.message and len(caught.value.message) <= 320
