"""Overview: the model's architecture, its test accuracy and sample predictions."""
import core  # first of all: loads the whole library at once (see explorer.py)
import pandas as pd
import streamlit as st

from core.engine.plots import to_display
from ui.explain import explain
from ui.state import friendly_errors, selection

SAMPLES = 16
DEMO_ADVICE = ("**The app opens on lenet5_fashionmnist.pt** with the embedded **fashion** images (nothing to "
               "install), the better classroom demo: garments give feature maps and AM images with readable edges "
               "and textures, and at 90 % its mistakes (shirt or T-shirt?) are ones a class can argue about. "
               "**lenet5_digits.pt** on **digits** (pick it in the sidebar) is the small, fast "
               "alternative: enlarged 8x8 scans, so its feature maps and AM images are blurry blobs.")

chosen = selection()
meta = chosen.meta
st.title("Neuron Ranking Explorer")
explain("overview")
st.caption("Which filters of a trained CNN matter, and why — rank them, look at them, switch them off, prune.")
with st.container(border=True):
    st.markdown(f"**Where to start.** The sidebar picks the model, the dataset and the layer (now **{chosen.layer}**; "
                "conv2 is a good first one). Then:")
    first, second, third = st.columns(3)
    first.page_link("pages/toggle.py", label="Live toggles: switch filters off",
                    icon=":material/toggle_on:")
    second.page_link("pages/rankings.py", label="Rankings: which filters matter",
                     icon=":material/leaderboard:")
    third.page_link("pages/am_gallery.py", label="AM gallery: what each filter looks for", icon=":material/image:")
    st.markdown(DEMO_ADVICE)

with friendly_errors():
    test = chosen.engine("test")
    result = chosen.baseline("test")  # computed once per server
    totals = core.model_totals(chosen.model)
    left, middle, right, last = st.columns(4)
    left.metric("Model", meta.arch, help=f"{meta.arch_params} — {meta.source}")
    middle.metric(f"Test accuracy ({chosen.dataset})", f"{result.accuracy:.2%}", help=f"{result.n} test images")
    st.caption(f"Evaluated on {chosen.evaluated_on('test')}.")
    right.metric("Parameters", f"{totals['params']:,}")
    last.metric("FLOPs per image", f"{totals['flops']:,}", help="multiply-adds of conv and fc layers")

    st.subheader("Prunable layers")
    layers = pd.DataFrame([vars(layer) for layer in core.prunable_layers(chosen.model)])
    layers.columns = ["layer", "kind", "units", "params", "FLOPs"]
    st.dataframe(layers, hide_index=True, width="stretch",
                 column_config={"params": st.column_config.NumberColumn(format="localized"),
                                "FLOPs": st.column_config.NumberColumn(format="localized")})

    st.subheader("Sample test images and predictions")
    st.caption("✓ correct prediction, ✗ wrong prediction (with the true class)")
    data = test.data
    step = max(1, len(data) // SAMPLES)
    columns = st.columns(8)
    for slot, index in enumerate(range(0, step * SAMPLES, step)[:len(data)]):
        truth = data.class_names[int(data.labels[index])]
        predicted = meta.class_names[int(result.predictions[index])]  # the model's classes (ImageNet on digits too)
        caption = f"✓ {predicted}" if truth == predicted else f"✗ {predicted} (true {truth})"
        columns[slot % 8].image(to_display(data.images[index]), caption=caption, width="stretch")
