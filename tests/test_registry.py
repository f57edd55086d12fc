"""binkit/registry.py and the hookspecs contract."""

from __future__ import annotations

import sys

import pytest

import binkit
from binkit import hookimpl, hookspecs, registry
from binkit.entries import ArchitectureEntry, BackendEntry, QuantizerEntry
from binkit.errors import DuplicateNameError, PluginError, PluginLoadError, UnknownNameError

FIRST_PARTY_QUANTIZERS = {"bnn", "xnor", "dorefa", "bireal", "irnet", "reactnet", "residual", "bifsmn", "bifsmn_code"}


class TestEntryPoints:
    def test_first_party_plugins_load_through_the_entry_point_group(self):
        from importlib import metadata

        eps = {ep.name: ep.value for ep in metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
        assert {"binarizers", "distillers", "kws", "toydata", "bifsmn"} <= set(eps)
        assert FIRST_PARTY_QUANTIZERS <= set(registry.names("quantizer"))
        # the provider is the distribution and entry-point name, as for any third party
        assert registry.get("quantizer", "xnor").provider == "binkit:binarizers"
        assert registry.get("quantizer", "bifsmn_code").provider == "binkit:bifsmn"

    def test_every_kind_has_a_hookspec_and_check_pending_passes(self):
        pm = registry.plugin_manager()
        for kind, (hook_name, _) in registry.KINDS.items():
            assert hasattr(hookspecs, hook_name), kind
            assert getattr(pm.hook, hook_name).spec is not None
        pm.check_pending()

    def test_hookspecs_are_documented_and_prefixed(self):
        for hook_name, _ in registry.KINDS.values():
            fn = getattr(hookspecs, hook_name)
            assert hook_name.startswith("binkit_")
            assert fn.__doc__ and "Return" in fn.__doc__


class TestLookups:
    def test_unknown_name_lists_known_names_and_suggests(self):
        with pytest.raises(UnknownNameError) as info:
            registry.get("quantizer", "xnr")
        msg = str(info.value)
        for name in FIRST_PARTY_QUANTIZERS:
            assert name in msg
        assert "did you mean 'xnor'" in msg

    def test_unknown_well_known_name_says_which_package_provides_it(self, clean_registry):
        registry.names("backend")  # load the entry points, then drop the engine
        registry.unregister_plugin("neon")  # as on a machine where the engine was not built
        with pytest.raises(UnknownNameError, match="binkit_neon"):
            registry.get("backend", "neon")

    def test_unknown_kind(self):
        with pytest.raises(ValueError, match="kinds are"):
            registry.names("optimizer")

    def test_wildcards_and_natural_sort(self, clean_registry):
        for n in ("zz10", "zz9", "zz1"):
            binkit.register_architecture(ArchitectureEntry(name=n, factory=lambda *a: None))
        assert registry.names("architecture", include="zz*") == ["zz1", "zz9", "zz10"]
        assert registry.names("architecture", include="zz*", exclude=["zz9"]) == ["zz1", "zz10"]
        assert registry.names("quantizer", include=["bi*"]) == ["bifsmn", "bifsmn_code", "bireal"]

    def test_alias_forwards_with_a_warning(self, clean_registry):
        registry.register_alias("quantizer", "xnor_net", "xnor")
        with pytest.warns(FutureWarning, match="renamed to 'xnor'"):
            assert registry.get("quantizer", "xnor_net").name == "xnor"


class TestRuntimeRegistration:
    def test_register_and_unregister_a_quantizer(self, clean_registry):
        from binkit_binarizers import bnn

        entry = QuantizerEntry(name="my_sign", weight=bnn.ENTRY.weight, input=bnn.ENTRY.input,
                               description="test")
        plugin_name = binkit.register_quantizer(entry)
        got = registry.get("quantizer", "my_sign")
        assert got.provider.startswith("runtime:")
        assert "my_sign" in registry.names("quantizer")
        registry.unregister_plugin(plugin_name)
        with pytest.raises(UnknownNameError):
            registry.get("quantizer", "my_sign")

    def test_duplicate_name_names_both_providers(self, clean_registry):
        binkit.register_quantizer(QuantizerEntry(name="xnor"))
        with pytest.raises(DuplicateNameError) as info:
            registry.get("quantizer", "xnor")
        assert "binkit:binarizers" in str(info.value) and "runtime:" in str(info.value)

    def test_register_plugin_module_object(self, clean_registry):
        class Plugin:
            @hookimpl
            def binkit_backends(self):
                return [BackendEntry(name="echo", factory=lambda: "backend")]

        registry.register_plugin(Plugin(), name="echo-plugin")
        assert registry.get("backend", "echo").factory() == "backend"

    def test_wrong_entry_type_is_rejected(self, clean_registry):
        class Plugin:
            @hookimpl
            def binkit_quantizers(self):
                return [ArchitectureEntry(name="oops")]

        registry.register_plugin(Plugin(), name="bad")
        with pytest.raises(PluginError, match="expected QuantizerEntry"):
            registry.names("quantizer")

    def test_invalid_name_is_rejected(self, clean_registry):
        binkit.register_quantizer(QuantizerEntry(name="Bad Name"))
        with pytest.raises(PluginError, match="invalid"):
            registry.names("quantizer")

    def test_misspelled_hook_is_caught(self, clean_registry):
        class Plugin:
            @hookimpl
            def binkit_quantiser(self):  # typo: no such hook
                return []

        with pytest.raises(Exception, match="binkit_quantiser"):
            registry.register_plugin(Plugin(), name="typo")

    def test_register_wrong_entry_class(self, clean_registry):
        with pytest.raises(TypeError, match="QuantizerEntry"):
            binkit.register_quantizer(ArchitectureEntry(name="x"))

    def test_not_deployable_entry_needs_a_reason(self):
        with pytest.raises(ValueError, match="not_deployable_reason"):
            QuantizerEntry(name="x", packing=None)

    def test_failing_hook_is_reported_with_the_plugin_name(self, clean_registry):
        class Plugin:
            @hookimpl
            def binkit_distillers(self):
                raise ImportError("no module named 'heavy'")

        registry.register_plugin(Plugin(), name="broken")
        with pytest.raises(PluginLoadError, match="broken.*heavy"):
            registry.names("distiller")


def test_plugin_import_failure_names_the_entry_point(tmp_path, monkeypatch):
    """A third-party plugin that fails to import is reported with its name and distribution."""
    (tmp_path / "brokenplug.py").write_text("raise RuntimeError('boom at import')\n")
    dist = tmp_path / "brokenplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[binkit]\nbroken = brokenplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reset()
    try:
        with pytest.raises(PluginLoadError) as info:
            registry.names("quantizer")
        msg = str(info.value)
        assert "'broken'" in msg and "brokenplug" in msg and "boom at import" in msg
    finally:
        sys.modules.pop("brokenplug", None)
        monkeypatch.undo()
        registry.reset()
