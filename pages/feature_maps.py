"""Ranked feature maps (paper A Fig. 1): what each unit of the layer sees in one image, best first."""
import streamlit as st

import core  # first: loads the whole library at once (see explorer.py)
from core.data import read_image, suggest_inversion
from core.rankings.plots import feature_map_grid, feature_maps
from ui.rankings import ranking_picker
from ui.explain import explain
from ui.state import friendly_errors, selection

chosen = selection()  # draws the sidebar; stops the page when nothing usable is chosen
with friendly_errors():
    data = chosen.data("val")
    st.title(f"Feature maps of {chosen.layer}, ordered by a ranking")
    explain("feature_maps")

    which, pick = st.columns([1, 2])
    source = which.radio("Image", ["From the dataset", "Upload a PNG/JPEG"])
    image = None
    if source == "From the dataset":
        index = pick.slider("Image number (validation split)", 0, len(data) - 1, 0)
        image = data.images[index]
        pick.caption(f"label: {data.class_names[int(data.labels[index])]}")
    else:
        upload = st.file_uploader("Any size or colour mode; it is converted to the model's input",
                                  type=["png", "jpg", "jpeg"])
        if upload is not None:
            image, conversion = read_image(upload.getvalue(), upload.name, chosen.meta.input_shape)
            suggested = suggest_inversion(image, data.images)
            invert = st.checkbox("Invert the brightness (dark ink on light paper → light ink on dark)", value=suggested,
                                 key=f"invert:{upload.file_id}",
                                 help="Models trained on MNIST-style digits learned light strokes on a black "
                                      "background; a drawing on white paper looks like noise to them until inverted.")
            if suggested:
                st.info("This picture is dark on a light background, the opposite of the images the model learned "
                        "from, so it is inverted (untick the box to see the difference).", icon=":material/contrast:")
            if invert:
                image, conversion = read_image(upload.getvalue(), upload.name, chosen.meta.input_shape, invert=True)
            st.caption(f"Conversion: {conversion}")
    if image is None:
        st.info("Upload an image to see its feature maps.")
        st.stop()
    pixels = image.permute(1, 2, 0).numpy()
    # one row: the input, what the model makes of it, and the grid's controls; the grid (the headline) comes next
    picture, verdict, controls = st.columns([1, 1.2, 2.4], vertical_alignment="center")
    picture.image(pixels[..., 0] if pixels.shape[2] == 1 else pixels, width=140, clamp=True, caption="model input")
    (best, probability), *others = core.predict(chosen.model, image)
    verdict.metric("The model predicts", best, f"{probability:.1%} probability", delta_color="off", delta_arrow="off")
    verdict.caption("Next: " + ", ".join(f"{name} ({p:.1%})" for name, p in others))

    ranking = ranking_picker(controls, chosen)
    marked = controls.slider("Units marked at the top and bottom", 1, max(1, chosen.units() // 2),
                       min(3, max(1, chosen.units() // 2)))
    maps = feature_maps(chosen.model, chosen.layer, image.unsqueeze(0))[0]
    st.plotly_chart(feature_map_grid(maps, ranking, marked), width="stretch")
