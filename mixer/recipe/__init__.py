"""The recipe: loading and checking it (``load``), the typed settings of the stages (``settings``), and
the commands that work on a recipe without building (``validate``, ``pin``, ``fetch``)."""
