"""A provider plugin as a third party would write it: one static provider declared through the hook."""

from hermes_plugin import Model, hookimpl


@hookimpl
def register_catalogs(register):  # type: ignore[no-untyped-def]
    register("sample", static=["sample/small", Model("sample/large", "Sample Large")], label="Sample Provider")


@hookimpl
def hermes_plugin_model_replacements():  # type: ignore[no-untyped-def]
    # The retirement map: the sample provider's retired model and the one its users should move to.
    return {"sample/retired": "sample/large"}
