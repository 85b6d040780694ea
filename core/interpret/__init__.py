"""What each filter does (paper B's interpretable half): activation-maximization images (``am``),
class contributions (``contributions``), the similarity degree and k-means clusters (``similarity``).
Stands on ``engine``, ``network``, ``data`` and ``rankings`` (the contribution index is a ranking)."""
from .am import AMResult, am_images, contact_sheet
from .contributions import class_contributions, gamma_figure
from .similarity import Clusters, Similarity, cluster_filters, pruning_selection, sd_figure, similarity_matrix
from .redundancy import SimilarityVsInteractions, interaction_figure, sd_interaction_scatter, similarity_vs_interactions

__all__ = ["AMResult", "am_images", "contact_sheet", "class_contributions", "gamma_figure", "Clusters",
           "Similarity", "cluster_filters", "pruning_selection", "sd_figure", "similarity_matrix"]
__all__ += ["SimilarityVsInteractions", "interaction_figure", "sd_interaction_scatter", "similarity_vs_interactions"]
