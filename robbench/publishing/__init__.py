"""The publishing side: what goes up to the Hugging Face Hub and what comes in through it.

``hub_publish`` uploads a model (``robbench submit``) and a board's records and site (``robbench publish``),
``model_card`` writes the model card a submission carries, and ``evaluation_queue`` holds the hub
submissions a maintainer evaluates (``robbench queue``). The hub download code they build on, ``robbench.hub``
and ``robbench.hub_ref``, stays at the bottom of the package, where the loader and the zoo use it too.
"""
