"""Streamlit glue shared by every page: cached loaders, the sidebar selection, error display.

Models, datasets and engines live in ``st.cache_resource`` and are shared by all browser
sessions, so nothing here (or in a page) may modify them: masks are per-session arguments.
"""
from __future__ import annotations

import hashlib
import os
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from torch import nn

import core
from core.network.checkpoint import ASSETS
from core.data import DATASETS, EMBEDDED, DataSplit, available_datasets
from core.network.device import device_label, model_device
from ui import view
from ui.rankings import chosen_method

EVAL_LIMIT = 2000  # images per split used for interactive evaluation of large datasets
# a torchvision model has no prefix cache: every toggle is a full forward pass (ResNet-18 at 224x224, 32 images:
# 3.3 s on one thread of a busy 2-core machine), so its interactive splits hold this many images
GENERIC_EVAL_LIMIT = 32
DIGITS_SHAPE = (1, 28, 28)
# What a fresh visit (a link without model=) opens on: the Fashion-MNIST model on its embedded test subset. Its
# feature maps and AM images are readable garments (the digits model's are blurred 8x8 scans) and at 90 % its
# mistakes are ones a class can argue about. The embedded subset, not the full files even when they are here, so
# that the first view and its numbers are the same on every machine and need no 60,000-image read.
# core.load_model() and the CLI keep the digits model (README says why).
DEFAULT_MODEL = "lenet5_fashionmnist.pt"
DEFAULT_DATASET = "fashion"
USER_ERRORS = (core.CheckpointError, core.DataError, ValueError, OSError, core.WorkerError)


def ray_address() -> str | None:
    """The Ray cluster the app's long computations run on: $RAY_ADDRESS, when it is set."""
    return os.environ.get("RAY_ADDRESS") or None


def ray_pool(engine: core.Engine) -> core.LocalPool | core.RayPool:
    """The pool the app's engine calls run on: Ray workers on the cluster in RAY_ADDRESS (closed on
    leaving the ``with``), else here. Results are the same either way."""
    return core.engine.pools.engine_pool(engine, ray_address=ray_address())


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def cached_model(source: str, content: bytes | None = None, pretrained: bool = True) -> nn.Module:
    """A model by path / torchvision name, or from uploaded bytes (keyed by their hash)."""
    return core.load_model(content if content is not None else source, pretrained=pretrained)


@st.cache_resource(show_spinner="Loading data…", max_entries=16)
def cached_dataset(name: str, split: str, root: str | None, input_shape: tuple, limit: int | None) -> DataSplit:
    # ImageFolder images come in any size; the embedded digits are converted to any model's input, so
    # every model (a torchvision one offline too) has something to explore
    shape = input_shape if name in ("imagefolder", *EMBEDDED) else None
    return core.load_dataset(name, split, root or None, input_shape=shape, limit=limit)


@st.cache_data(ttl=30, show_spinner=False)
def found_datasets(root: str | None) -> dict[str, str]:
    """The file datasets on this machine (root given, $NRE_DATA_ROOT, ./data, /usr/share/datasets) and
    where each was found; looked up again after 30 s, so files installed meanwhile appear."""
    return {name: str(folder) for name, folder in available_datasets(root or None).items()}


def dataset_choices(root: str | None) -> list[str]:
    """What the sidebar offers: the embedded datasets, the file datasets found here, and ImageFolder."""
    return [*EMBEDDED, *found_datasets(root), "imagefolder"]


def default_dataset(model_dataset: str | None, choices: list[str]) -> str:
    """The dataset a model starts on: its own when it is here, else the embedded one of its kind."""
    if model_dataset in choices:
        return model_dataset
    stand_in = core.data.load.STAND_INS.get(model_dataset or "", "digits")
    return stand_in if stand_in in choices else "digits"


@st.cache_resource(max_entries=16)
def cached_engine(model_key: str, data_key: str, _model: nn.Module, _data: DataSplit) -> core.Engine:
    """One engine (and so one prefix cache) per model and data split, shared by sessions."""
    return core.Engine(_model, _data)


@st.cache_resource(max_entries=32, show_spinner="Evaluating the full network…")
def cached_baseline(model_key: str, data_key: str, _engine: core.Engine) -> core.EvalResult:
    """The unmasked network's result on a split: computed once per server, shared by every session."""
    with core.scheduler().slot(core.engine.LIVE):
        return _engine.evaluate()


@dataclass
class Selection:
    """What the sidebar chose; every page starts from this."""

    model: nn.Module
    dataset: str
    root: str | None
    layer: str

    @property
    def meta(self) -> core.ModelMeta:
        return self.model.meta

    @property
    def model_key(self) -> str:
        return self.meta.sha256 or self.meta.source

    @property
    def eval_limit(self) -> int:
        """Images a page evaluates per split: a staged model's prefix cache keeps EVAL_LIMIT fast, a generic one not."""
        return EVAL_LIMIT if core.network.models.is_staged(self.model) else GENERIC_EVAL_LIMIT

    def data(self, split: str = "val") -> DataSplit:
        return cached_dataset(self.dataset, split, self.root, tuple(self.meta.input_shape), self.eval_limit)

    def evaluated_on(self, split: str = "val") -> str:
        """Which images a page evaluates on, in words (a large split is a seeded subset of EVAL_LIMIT)."""
        data = self.data(split)
        subset = "[" in data.split
        return (f"{len(data):,} {self.dataset} {split} images"
                + (f" (a fixed seeded subset of the split: {self.eval_limit:,} images keep every click fast)" if subset else ""))

    def engine(self, split: str = "val") -> core.Engine:
        data = self.data(split)
        return cached_engine(self.model_key, f"{data.key}:{self.root}", self.model, data)

    def baseline(self, split: str = "val") -> core.EvalResult:
        """The unmasked network on a split (overview, live toggles' reference): once per server."""
        engine = self.engine(split)
        return cached_baseline(self.model_key, f"{engine.data.key}:{self.root}", engine)

    def units(self) -> int:
        return self.engine().units(self.layer)

    def units_off(self, layer: str | None = None) -> set[int]:
        """This session's switched-off units of ``layer`` (default: the selected one), kept per layer."""
        return st.session_state.setdefault(f"off:{self.model_key}:{self.dataset}:{layer or self.layer}", set())

    def set_units_off(self, units, layer: str | None = None) -> None:
        st.session_state[f"off:{self.model_key}:{self.dataset}:{layer or self.layer}"] = set(int(u) for u in units)

    def link_params(self) -> dict[str, str]:
        """What a link needs to reopen this view (uploaded and path models cannot be shared by link)."""
        source = self.meta.source
        if source.startswith(view.TORCHVISION):
            model = source + ("" if self.meta.arch_params.get("pretrained", True) else ":random")
        else:
            model = Path(source).name if Path(source).parent == ASSETS else ""
        return {"model": model, "dataset": self.dataset, "layer": self.layer,
                "off": ",".join(map(str, sorted(self.units_off()))), "rank": chosen_method(self) or ""}


def shipped_checkpoints() -> list[Path]:
    return sorted(ASSETS.glob("*.pt"))


def sidebar() -> Selection | None:
    """Model, dataset and layer pickers; returns None (after showing why) when nothing usable is chosen."""
    st.sidebar.header("Model & data")
    shipped = shipped_checkpoints()
    options = [p.name for p in shipped] + ["Upload a checkpoint…", "Checkpoint path…", "torchvision model…"]
    choice = st.sidebar.selectbox("Model", options, **_sticky("model_choice", options=options),
                                  help="Shipped checkpoints live in assets/. Checkpoints load with "
                                       "weights_only=True: files that carry code are refused.")
    # a model that takes a while to load: say so at the top of the page (in place of whatever the last run
    # showed there, e.g. an error about the previous choice, which would otherwise stay up, faded, meanwhile)
    loading = st.empty()
    if st.session_state.get("_loaded_choice") != choice:
        loading.info(f"Loading {choice}…", icon=":material/hourglass_top:")
    try:
        model = _chosen_model(choice, shipped)
        st.session_state["_loaded_choice"] = choice
        loading.empty()
    except USER_ERRORS as exc:
        loading.empty()
        st.sidebar.error(str(exc))
        st.warning("This model cannot be used — the sidebar says why. Choose another file, or pick a shipped "
                   "checkpoint in the sidebar's Model list.")
        return None
    if model is None:
        st.info("Choose a model in the sidebar to begin.")
        return None
    model_key = model.meta.sha256 or model.meta.source
    choices = dataset_choices(st.session_state.get("_keep:data_root", "data"))
    if st.session_state.get("_dataset_for") != model_key:  # a new model starts on the dataset it was trained on
        st.session_state["_dataset_for"] = model_key  # (the default view on the embedded one, see DEFAULT_DATASET)
        default_view = st.session_state.pop("_url:default_view", False) and choice == DEFAULT_MODEL
        st.session_state["_keep:dataset"] = (DEFAULT_DATASET if default_view and DEFAULT_DATASET in choices
                                             else default_dataset(model.meta.dataset, choices))
    asked = st.session_state.get("_url:pending", {}).get("dataset")
    linked = view.pending("dataset", lambda v: v in choices,
                          f"is not one of {', '.join(DATASETS)}" if asked not in DATASETS else
                          f"is not available on this machine (available: {', '.join(choices)})")
    if linked:
        st.session_state["_keep:dataset"] = linked
    dataset = st.sidebar.selectbox("Dataset", choices, **_sticky("dataset", options=choices),
                                   help="digits and fashion are embedded (scikit-learn's handwritten digits at "
                                        "28x28; 3,000 Fashion-MNIST test images). MNIST, FashionMNIST and CIFAR-10 "
                                        "are listed when their files are found: in the data folder, $NRE_DATA_ROOT, "
                                        "./data or /usr/share/datasets (Debian's dataset packages).")
    found = found_datasets(st.session_state.get("_keep:data_root", "data"))
    st.sidebar.caption("Found on this machine: " + ("; ".join(f"{name} in `{folder}`" for name, folder in found.items())
                                                    or "no MNIST, FashionMNIST or CIFAR-10 files")
                       + ". Embedded: " + ", ".join(EMBEDDED) + ".")
    root = None
    if dataset in EMBEDDED and tuple(model.meta.input_shape) != DIGITS_SHAPE:
        shape = "x".join(map(str, model.meta.input_shape))
        st.sidebar.info(f"The {dataset} images are converted to this model's {shape} input (enlarged, grey copied to "
                        f"colour) so that it can be explored offline. It was not trained on them: its accuracy "
                        f"here means nothing, but feature maps, AM images and weight rankings are real. For real "
                        f"accuracy choose ImageFolder with images of its own classes.")
    if dataset not in EMBEDDED:
        root = st.sidebar.text_input("Data folder", **_sticky("data_root", default="data"),
                                     help="Looked in first, then $NRE_DATA_ROOT, ./data and /usr/share/datasets. "
                                          "MNIST: <folder>/MNIST/raw or the idx files in <folder>; CIFAR-10: "
                                          "<folder>/cifar-10-batches-py; ImageFolder: <folder>/<class>/<images>")
    if not core.network.models.is_staged(model):
        st.sidebar.caption(f"Evaluated on {GENERIC_EVAL_LIMIT} images per split: this model has no prefix cache, so "
                           f"every toggle runs the whole network (seconds on a CPU).")
    chosen = Selection(model, dataset, root, layer="")
    try:
        chosen.engine("val")  # loads the split and checks that it fits the model
    except USER_ERRORS as exc:
        st.sidebar.error(str(exc))
        st.warning("The chosen dataset cannot be used with this model — see the message in the sidebar.")
        return None
    layers = core.prunable_layers(model)
    labels = {layer.name: f"{layer.name} ({layer.kind}, {layer.units} units)" for layer in layers}
    linked = view.pending("layer", lambda v: v in labels, f"is not a layer of this model ({', '.join(labels)})")
    if linked:
        st.session_state["_keep:layer"] = linked
    chosen.layer = st.sidebar.selectbox("Layer", list(labels), format_func=labels.get,
                                        **_sticky("layer", options=list(labels)))
    st.sidebar.caption(f"Runs on: {device_label(model_device(model))}",
                       help="Every computation runs where the model is: CUDA when present, else CPU.")
    return chosen


def _sticky(key: str, default=None, options: list | tuple | None = None) -> dict:
    """Widget arguments for a sidebar choice that survives page switches.

    The sidebar is drawn by each page, and Streamlit gives a widget a different id on every page,
    so its state would be dropped on navigation: keep the value under a plain key and restore it."""
    saved = st.session_state.get(f"_keep:{key}", default)
    if saved is not None and (options is None or saved in options):
        st.session_state[key] = saved
    return {"key": key, "on_change": _keep, "args": (key,)}


def _keep(key: str) -> None:
    st.session_state[f"_keep:{key}"] = st.session_state[key]


def _chosen_model(choice: str, shipped: list[Path]) -> nn.Module | None:
    if choice == "Upload a checkpoint…":
        upload = st.sidebar.file_uploader("Checkpoint (.pt)", type=["pt", "pth", "ckpt"], key="upload")
        if upload is not None:  # an uploader cannot be restored on another page: keep the file itself
            st.session_state["_keep:upload"] = (upload.name, upload.getvalue())
        if "_keep:upload" not in st.session_state:
            return None
        name, content = st.session_state["_keep:upload"]
        if upload is None:
            st.sidebar.caption(f"Using the uploaded {name}")
        return cached_model(f"upload:{hashlib.sha256(content).hexdigest()}", content)
    if choice == "Checkpoint path…":
        path = st.sidebar.text_input("Checkpoint path", placeholder="path/to/model.pt", **_sticky("ckpt_path"))
        if not path:
            return None
        if not Path(path).expanduser().is_file():
            raise core.CheckpointError(f"no file at {path}")
        return cached_model(str(Path(path).expanduser()))
    if choice == "torchvision model…":
        name = st.sidebar.text_input("torchvision model name", placeholder="resnet18", **_sticky("tv_name"))
        pretrained = st.sidebar.checkbox("Pretrained ImageNet weights", **_sticky("tv_pretrained", default=True),
                                         help="Needs the internet (or the weights file in the torch hub "
                                              "cache); without it the model has random weights.")
        return cached_model(name.strip(), pretrained=pretrained) if name.strip() else None
    return cached_model(str(shipped[[p.name for p in shipped].index(choice)]))


def selection() -> Selection:
    """Render the shared sidebar and return what it selects; stops the page when nothing usable is chosen.

    Every page starts with this call (the sidebar lives in the page script, not in explorer.py,
    so that AppTest sees it on reruns too)."""
    _leave_pages_directory_mode()
    view.read_link([p.name for p in shipped_checkpoints()], DEFAULT_MODEL)
    with friendly_errors():
        chosen = sidebar()
        if chosen is not None:
            _apply_link(chosen)
            view.show_notes()
            share(chosen)
            return chosen
    view.show_notes()
    st.stop()


def _apply_link(chosen: Selection) -> None:
    method = view.pending("rank", lambda v: v in core.rankings.METHODS, f"is not a ranking method ({', '.join(core.rankings.METHODS)})")
    if method:
        st.session_state["_url:rank"] = method  # ranking_picker applies it where a page orders units
    text = view.pending("off", lambda v: True, "")
    if text is not None:
        units, bad = view.parse_units(text, chosen.units())
        chosen.set_units_off(units)
        if bad:
            st.session_state["_url:notes"].append(
                f"unit(s) {', '.join(bad)} do not exist in {chosen.layer} (units 0..{chosen.units() - 1})")


def share(chosen: Selection) -> None:
    """Keep the address bar on this view, and offer the link in the sidebar."""
    with st.sidebar.popover("Copy link to this view", icon=":material/link:", width="stretch"):
        if chosen.link_params()["model"]:
            st.caption("The copy button at the right of the link puts it on the clipboard. Opening it shows this "
                       "page, model, dataset, layer, units off and ranking.")
        else:
            st.caption("An uploaded checkpoint or a file path cannot travel in a link: share the file, or put it "
                       "in assets/ so that it becomes a shipped checkpoint.")
        st.session_state["_link_slot"] = st.empty()
    publish_view(chosen)


def publish_view(chosen: Selection) -> None:
    """Write the view to the address bar and the same link into the sidebar's popover.

    A page whose widgets rerun only a fragment (Live toggles) calls this at the end of the fragment too: a
    fragment rerun does not redraw the sidebar, and Streamlit lets a fragment that writes to an outside
    ``st.empty`` on full runs refill it on its own reruns, so the popover never shows a stale link."""
    params = chosen.link_params()
    view.write_link(params)
    slot = st.session_state.get("_link_slot")
    if slot is not None and params["model"]:
        slot.code(view.link_to(params), language=None, wrap_lines=True)


def _leave_pages_directory_mode() -> None:
    """A fresh server whose first request is a deep link (/toggle) runs that page in Streamlit's
    legacy pages/-folder mode, skipping explorer.py's st.navigation (file names in the menu, narrow
    layout) until the server restarts. Switch the flag st.navigation would set and rerun through it."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if not st.session_state.get("_left_pages_mode"):  # once per session: AppTest re-enters this mode each run
            st.session_state["_left_pages_mode"] = True
            st.rerun()


@contextmanager
def friendly_errors():
    """Show a user's mistake as a message and a bug as a short note, never a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        st.error(str(exc))
    except core.Cancelled:  # the compute policy stopped it (the session left); nothing was kept
        st.info("Stopped: nothing was kept.")
    except Exception as exc:  # a bug: keep the app usable, log the details to the server console
        traceback.print_exc()
        st.error(f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log.")
