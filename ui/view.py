"""The view in the URL, so that a link reproduces it: the page (Streamlit's own path), and
``?model=...&dataset=...&layer=...&off=3,7&rank=l1``.

A session reads its link once, before the sidebar draws; values that cannot be used are dropped one by
one (the closest valid view opens) and the page says what was ignored. Every run writes the current view
back, so the address bar is always a link to what is on screen.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import urlencode

import streamlit as st

KEYS = ("model", "dataset", "layer", "off", "rank")
TORCHVISION = "torchvision:"  # model=torchvision:resnet18 (pretrained) or torchvision:resnet18:random


def read_link(shipped: list[str], default: str) -> None:
    """Once per session: turn the link's values into the sidebar's remembered choices (or notes).

    A link without a usable model opens the ``default`` shipped model (an explicit choice, not the first of
    the sorted files), and ``_url:default_view`` tells the sidebar to open it on the default view's dataset."""
    if st.session_state.get("_url:read"):
        return
    st.session_state["_url:read"] = True
    params = st.query_params.to_dict()
    notes = [f"unknown link parameter '{k}'" for k in sorted(set(params) - set(KEYS))]
    model = params.pop("model", "")
    if model in shipped:
        st.session_state["_keep:model_choice"] = model
    elif model.startswith(TORCHVISION) and model[len(TORCHVISION):].split(":")[0]:
        name, _, weights = model[len(TORCHVISION):].partition(":")
        st.session_state.update({"_keep:model_choice": "torchvision model…", "_keep:tv_name": name,
                                 "_keep:tv_pretrained": weights != "random"})
    else:
        if model:
            notes.append(f"model '{model}' is neither a shipped checkpoint ({', '.join(shipped)}) nor "
                         "torchvision:NAME, so the default model opened")
        if default in shipped:
            st.session_state.update({"_keep:model_choice": default, "_url:default_view": True})
    st.session_state["_url:pending"] = {k: v for k, v in params.items() if k in KEYS}
    st.session_state["_url:notes"] = notes


def pending(key: str, valid: Callable[[str], bool], what: str) -> str | None:
    """The link's value for ``key`` if it is still to be applied and ``valid``; otherwise a note says why not."""
    value = st.session_state.get("_url:pending", {}).pop(key, None)
    if value is None:
        return None
    if valid(value):
        return value
    st.session_state["_url:notes"].append(f"{key} '{value}' {what}")
    return None


def parse_units(text: str, units: int) -> tuple[list[int], list[str]]:
    """'3,7' -> ([3, 7], []); numbers outside 0..units-1 or unreadable parts come back as the second list."""
    good, bad = [], []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < units:
            good.append(int(part))
        elif part:
            bad.append(part)
    return sorted(set(good)), bad


def show_notes() -> None:
    """What the link asked for that could not be opened, once."""
    notes = st.session_state.get("_url:notes")
    if notes:
        st.warning("This link had values that could not be used, so the closest valid view opened: "
                   + "; ".join(notes) + ".", icon=":material/link_off:")
        st.session_state["_url:notes"] = []


def write_link(params: dict[str, str]) -> None:
    """Make the address bar show this view (only when it changed: each write is a browser history step)."""
    params = {k: v for k, v in params.items() if v}
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def link_to(params: dict[str, str]) -> str:
    """A full link to this page with ``params``."""
    base = str(st.context.url or "").split("?")[0]
    params = {k: v for k, v in params.items() if v}
    return f"{base}?{urlencode(params, safe=':,')}" if params else base
