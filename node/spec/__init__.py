"""The function-spec model: ColonyOS FunctionSpec/WorkflowSpec JSON, validated and frozen.

Everything else reads specs through this package, and it imports nothing
else of colonymesh, so executors may depend on it alone.

- ``parse_function_spec`` / ``parse_workflow_spec``: strict validation with
  field-named ``SpecError``\\ s; ``to_json()`` gives the normalised ColonyOS
  JSON back.
- ``quantity``: Kubernetes quantities (``"500m"``, ``"1Gi"``) to millicores
  and bytes.
- ``canonical``: canonical CBOR and submission ids.
- ``command``: which argv and container image a spec asks an executor to run.
"""

from colonymesh.node.spec.canonical import canonical_cbor, spec_id, workflow_id
from colonymesh.node.spec.command import CommandLine, arg_word, resolve_command
from colonymesh.node.spec.errors import SpecError
from colonymesh.node.spec.jsonvalue import FrozenMap, JsonValue
from colonymesh.node.spec.model import (
    Conditions,
    ConflictResolution,
    Filesystem,
    FunctionSpec,
    Gpu,
    SnapshotMount,
    SyncDirMount,
    WorkflowSpec,
)
from colonymesh.node.spec.parse import (
    parse_function_spec,
    parse_workflow_spec,
    validate_function_spec,
)
from colonymesh.node.spec.quantity import (
    QuantityError,
    format_bytes,
    format_millicores,
    parse_bytes,
    parse_millicores,
)

__all__ = [
    "CommandLine",
    "Conditions",
    "ConflictResolution",
    "Filesystem",
    "FrozenMap",
    "FunctionSpec",
    "Gpu",
    "JsonValue",
    "QuantityError",
    "SnapshotMount",
    "SpecError",
    "SyncDirMount",
    "WorkflowSpec",
    "arg_word",
    "canonical_cbor",
    "format_bytes",
    "format_millicores",
    "parse_bytes",
    "parse_function_spec",
    "parse_millicores",
    "parse_workflow_spec",
    "resolve_command",
    "spec_id",
    "validate_function_spec",
    "workflow_id",
]
