"""`migrate --rewrite`: the agent class turned into module-level functions (the runbook's Path A).

    class MyAgent(ResponsesAgent):            client = DatabricksOpenAI()
        def __init__(self):
            self.client = DatabricksOpenAI()  def predict(request):
        def predict(self, request):   ->          return call(client, request)
            return call(self.client, ...)
    set_model(MyAgent())                      @invoke()
                                              def invoke_handler(request): ...

The rewrite is mechanical, so it is only done where it cannot change what the code does; every
other model keeps the adapter (entrypoint.py), and `refusals()` says why. It is safe when:
the model was logged from one code file, with no code_paths, artifacts or ModelConfig (those
resolve through MLflow's loader); the file defines one ResponsesAgent subclass, instantiated
without arguments only for set_model(); __init__ only assigns attributes (`self.x = ...`), which
become module globals; `self` appears only as `self.<attribute>`, `self.<method>` or
`self.<ResponsesAgent helper>`, attributes are never reassigned outside __init__, and no new
module-level name collides with a name the file already uses.
"""

from __future__ import annotations

import ast
import builtins
import inspect
from dataclasses import dataclass

from agent_cli.migration.entrypoint import ASYNC_HANDLER_DEFS
from agent_cli.migration.mlmodel import ModelInfo

SERVER_NAMES = {
    "invoke": "mlflow.genai.agent_server",
    "stream": "mlflow.genai.agent_server",
    "ResponsesAgentRequest": "mlflow.types.responses",
    "ResponsesAgentResponse": "mlflow.types.responses",
    "ResponsesAgentStreamEvent": "mlflow.types.responses",
}
SYNC_NAMES = {"Iterator": "collections.abc"}
ASYNC_NAMES = {
    "AsyncIterator": "collections.abc",
    "Iterator": "collections.abc",
    "async_invoke": "agent_server.runtime.handler_adapter",
    "async_stream": "agent_server.runtime.handler_adapter",
}
# Same object under another module name: an existing import of it can be reused.
EQUIVALENT_MODULES = {"collections.abc": {"typing"}}
ADDED_DEFINITIONS = {
    "invoke_handler",
    "stream_handler",
    "finished_items",
    "predict_in_thread",
    "predict_stream_in_thread",
}

SYNC_HANDLERS = """

# Served with @invoke and @stream (added by `uv run migrate --rewrite`).
@invoke()
def invoke_handler(request: ResponsesAgentRequest) -> ResponsesAgentResponse:
    return predict(request)


@stream()
def stream_handler(request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
    yield from {stream_call}(request)
"""

ASYNC_HANDLERS = (
    """

# Served with @invoke and @stream (added by `uv run migrate --rewrite`). The agent's code is
# sync: it runs on the server's worker threads, never on the event loop, exactly as the server
# runs sync handlers (agent_server/runtime/handler_adapter.py).
predict_in_thread = async_invoke(predict)
predict_stream_in_thread = async_stream({stream_call})

"""
    + ASYNC_HANDLER_DEFS
)

FINISHED_ITEMS = '''

def finished_items(request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
    """predict() has no streaming twin: its output items as stream events, once finished."""
    response = predict(request)
    if not isinstance(response, ResponsesAgentResponse):
        response = ResponsesAgentResponse.model_validate(response)
    items = [item.model_dump(exclude_none=True) for item in response.output]
    for index, item in enumerate(items):
        last = index == len(items) - 1
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done",
            item=item,
            custom_outputs=response.custom_outputs if last else None,
        )
'''


class RewriteRefused(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class _Edit:
    start: int
    end: int
    text: str


def responses_agent_helpers() -> set[str]:
    """ResponsesAgent's static helpers (create_text_delta, ...): `self.x` becomes `Base.x`."""
    from mlflow.pyfunc import ResponsesAgent

    return {
        name
        for name in dir(ResponsesAgent)
        if isinstance(inspect.getattr_static(ResponsesAgent, name, None), staticmethod)
    }


def rewrite(model: ModelInfo, *, is_async: bool) -> str:
    """The rewritten agent.py (before formatting); raises RewriteRefused with the reasons."""
    reasons = []
    if not model.from_code:
        reasons.append("the model is a pickled python_model: there is no source to rewrite")
    if model.code_dir:
        reasons.append("it has code_paths, which MLflow's loader puts on sys.path")
    if model.artifacts:
        reasons.append("it reads artifacts through load_context(context)")
    if model.model_config:
        reasons.append("it reads a ModelConfig, which only MLflow's loader fills in")
    if reasons:
        raise RewriteRefused(reasons)
    source = (model.directory / model.model_file).read_text(encoding="utf-8")
    return _Rewriter(source, is_async).run()


class _Rewriter:
    def __init__(self, source: str, is_async: bool) -> None:
        self.source = source
        self.is_async = is_async
        self.reasons: list[str] = []
        try:
            self.tree = ast.parse(source)
        except SyntaxError as exc:
            raise RewriteRefused([f"the model's code does not parse: {exc}"]) from exc
        self.line_offsets = [0]
        for line in source.splitlines(keepends=True):
            self.line_offsets.append(self.line_offsets[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        """Character offset of an AST (line, UTF-8 byte column) position."""
        start = self.line_offsets[line - 1]
        text = self.source[start : self.line_offsets[line]] if line < len(self.line_offsets) else ""
        return start + len(text.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (
            self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
            self.offset(node.end_lineno, node.end_col_offset),  # type: ignore[attr-defined]
        )

    def line_span(self, node: ast.stmt) -> tuple[int, int]:
        """The node's full lines, newline included."""
        return self.line_offsets[node.lineno - 1], self.line_offsets[node.end_lineno]  # type: ignore[index]

    def refuse(self, reason: str) -> None:
        self.reasons.append(reason)

    def run(self) -> str:
        agent_class = self.find_class()
        base = ast.get_source_segment(self.source, agent_class.bases[0]) or "ResponsesAgent"
        removed = self.instantiations(agent_class)
        attributes, methods, init = self.class_members(agent_class)
        helpers = responses_agent_helpers()
        new_names = set(attributes) | set(methods)
        self.check_names(new_names, agent_class, removed)
        self.check_self_uses(agent_class, attributes, set(methods), helpers)
        if "predict" not in methods:
            self.refuse("the class has no predict() method")
        wanted_imports = dict(SERVER_NAMES)
        wanted_imports.update(ASYNC_NAMES if self.is_async else SYNC_NAMES)
        if "predict_stream" not in methods:
            wanted_imports.update(SYNC_NAMES)
        imports = self.missing_imports(wanted_imports)
        if self.reasons:
            raise RewriteRefused(self.reasons)

        hoisted = [
            self.hoisted(statement, base, helpers)
            for statement in (init.body if init else [])
            if isinstance(statement, ast.Assign)
        ]
        block = ["\n".join(hoisted)] if hoisted else []
        for name, method in methods.items():
            if name != "__init__":
                block.append(self.function(method, base, helpers))
        edits = [_Edit(*self.line_span(agent_class), "\n\n\n".join(block) + "\n")]
        edits += [_Edit(*self.line_span(statement), "") for statement in removed]
        text = self.apply(self.source, edits)

        last_import = max(
            (n.end_lineno for n in self.tree.body if isinstance(n, ast.Import | ast.ImportFrom)),
            default=None,
        )
        if last_import is None:
            position = self.after_docstring()
        else:
            position = self.line_offsets[last_import]
        text = text[:position] + "".join(imports) + text[position:]
        if ast.get_docstring(self.tree) is None:
            text = (
                '"""The agent, rewritten from the migrated model\'s code by '
                '`uv run migrate --rewrite`."""\n\n' + text
            )
        stream_call = "predict_stream" if "predict_stream" in methods else "finished_items"
        handlers = (ASYNC_HANDLERS if self.is_async else SYNC_HANDLERS).format(
            stream_call=stream_call
        )
        if stream_call == "finished_items":
            handlers = FINISHED_ITEMS + handlers
        return text.rstrip("\n") + "\n" + handlers

    def find_class(self) -> ast.ClassDef:
        classes = [
            node
            for node in self.tree.body
            if isinstance(node, ast.ClassDef)
            and len(node.bases) == 1
            and (ast.get_source_segment(self.source, node.bases[0]) or "").endswith(
                "ResponsesAgent"
            )
        ]
        if len(classes) != 1:
            raise RewriteRefused(
                [f"the code defines {len(classes)} ResponsesAgent subclasses, not exactly one"]
            )
        agent_class = classes[0]
        if agent_class.decorator_list or agent_class.keywords:
            raise RewriteRefused(["the agent class has decorators or class keywords"])
        return agent_class

    def instantiations(self, agent_class: ast.ClassDef) -> list[ast.stmt]:
        """The statements that make the agent and hand it to set_model(), to be removed."""
        name = agent_class.name
        removed: list[ast.stmt] = []
        instance_names: set[str] = set()
        for statement in self.tree.body:
            if statement is agent_class:
                continue
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and _is_bare_call(statement.value, name)
            ):
                instance_names.add(statement.targets[0].id)
                removed.append(statement)
                continue
            if isinstance(statement, ast.Expr) and _is_set_model(statement.value):
                argument = statement.value.args[0] if statement.value.args else None  # type: ignore[attr-defined]
                if _is_bare_call(argument, name) or (
                    isinstance(argument, ast.Name) and argument.id in instance_names
                ):
                    removed.append(statement)
                    continue
                self.refuse("set_model() is given something other than the agent class")
        if not any(isinstance(s, ast.Expr) for s in removed):
            self.refuse("the code does not call set_model() with the agent")
        referenced = {name} | instance_names
        for statement in self.tree.body:
            if statement is agent_class or statement in removed:
                continue
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and node.id in referenced:
                    self.refuse(f"module-level code uses {node.id} outside set_model()")
                    return removed
        return removed

    def class_members(
        self, agent_class: ast.ClassDef
    ) -> tuple[list[str], dict[str, ast.FunctionDef], ast.FunctionDef | None]:
        methods: dict[str, ast.FunctionDef] = {}
        for index, node in enumerate(agent_class.body):
            if index == 0 and _is_docstring(node):
                continue
            if isinstance(node, ast.FunctionDef) and not node.decorator_list:
                methods[node.name] = node
            else:
                self.refuse(
                    f"the class body has more than plain methods (line {node.lineno}): "
                    "class attributes, decorators or async methods"
                )
        for name, method in methods.items():
            args = method.args
            if not args.args or args.args[0].arg != "self" or args.posonlyargs:
                self.refuse(f"method {name} does not take `self` first")
            if name.startswith("__") and name != "__init__":
                self.refuse(f"the class defines {name}")
            if name == "load_context":
                self.refuse("the class defines load_context(context)")
        init = methods.get("__init__")
        attributes: list[str] = []
        if init is not None:
            if len(init.args.args) != 1 or init.args.vararg or init.args.kwarg:
                self.refuse("__init__ takes arguments")
            for index, statement in enumerate(init.body):
                if index == 0 and _is_docstring(statement):
                    continue
                target = statement.targets[0] if isinstance(statement, ast.Assign) else None
                if (
                    isinstance(statement, ast.Assign)
                    and len(statement.targets) == 1
                    and _self_attribute(target) is not None
                ):
                    attributes.append(_self_attribute(target))  # type: ignore[arg-type]
                elif not isinstance(statement, ast.Pass):
                    self.refuse(
                        f"__init__ does more than assign attributes (line {statement.lineno})"
                    )
        return attributes, methods, init

    def check_names(
        self, new_names: set[str], agent_class: ast.ClassDef, removed: list[ast.stmt]
    ) -> None:
        used: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.arg):
                used.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node not in agent_class.body:
                    used.add(node.name)
            elif isinstance(node, ast.alias):
                used.add((node.asname or node.name).split(".")[0])
        used -= {"self"}
        for name in sorted(new_names - {"__init__"}):
            if name in used or name in ADDED_DEFINITIONS or name in dir(builtins):
                self.refuse(f"`{name}` would collide with a name the module already uses")

    def check_self_uses(
        self,
        agent_class: ast.ClassDef,
        attributes: list[str],
        methods: set[str],
        helpers: set[str],
    ) -> None:
        allowed = set(attributes) | methods | helpers
        for method in agent_class.body:
            if not isinstance(method, ast.FunctionDef):
                continue
            parents = {
                child: parent
                for parent in ast.walk(method)
                for child in ast.iter_child_nodes(parent)
            }
            for node in ast.walk(method):
                if isinstance(node, ast.Name) and node.id == "super":
                    self.refuse(f"{method.name} calls super()")
                if not (isinstance(node, ast.Name) and node.id == "self"):
                    continue
                parent = parents.get(node)
                if not (isinstance(parent, ast.Attribute) and parent.value is node):
                    self.refuse(f"{method.name} uses `self` other than as self.<name>")
                    continue
                if parent.attr not in allowed:
                    self.refuse(f"{method.name} uses self.{parent.attr}, which __init__ never sets")
                stored = not isinstance(parent.ctx, ast.Load)
                if stored and method.name != "__init__":
                    self.refuse(f"{method.name} reassigns self.{parent.attr}")

    def missing_imports(self, wanted: dict[str, str | None]) -> list[str]:
        bound: dict[str, str | None] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound[alias.asname or alias.name.split(".")[0]] = (
                        None if alias.asname is None and "." not in alias.name else "?"
                    )
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound[alias.asname or alias.name] = (
                        node.module if alias.asname in (None, alias.name) else "?"
                    )
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound[node.name] = "?"
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            bound[name.id] = "?"
        lines = []
        for name, module in sorted(wanted.items()):
            if name in bound:
                have = bound[name]
                if have == module or have in EQUIVALENT_MODULES.get(module or "", set()):
                    continue
                self.refuse(f"the module already defines `{name}` differently")
                continue
            lines.append(f"import {name}\n" if module is None else f"from {module} import {name}\n")
        return lines

    def after_docstring(self) -> int:
        body = self.tree.body
        if body and _is_docstring(body[0]):
            return self.line_offsets[body[0].end_lineno]  # type: ignore[index]
        return 0

    def self_edits(self, node: ast.AST, base: str, helpers: set[str], shift: int) -> list[_Edit]:
        """`self.x` -> `x` (or `Base.x` for ResponsesAgent helpers) inside `node`."""
        edits = []
        for child in ast.walk(node):
            if (
                isinstance(child, ast.Attribute)
                and isinstance(child.value, ast.Name)
                and child.value.id == "self"
            ):
                start, _ = self.span(child.value)
                _, end = self.span(child)
                attr_start = end - len(child.attr)
                replacement = f"{base}." if child.attr in helpers else ""
                edits.append(_Edit(start - shift, attr_start - shift, replacement))
        return edits

    def hoisted(self, statement: ast.Assign, base: str, helpers: set[str]) -> str:
        start, end = self.line_span(statement)
        text = self.source[start:end]
        edits = self.self_edits(statement, base, helpers, start)
        return _dedent(self.apply(text, edits), statement.col_offset, self).rstrip("\n")

    def function(self, method: ast.FunctionDef, base: str, helpers: set[str]) -> str:
        start, end = self.line_span(method)
        text = self.source[start:end]
        edits = self.self_edits(method, base, helpers, start)
        self_arg = method.args.args[0]
        arg_start, arg_end = self.span(self_arg)
        following = method.args.args[1] if len(method.args.args) > 1 else None
        if following is not None:
            arg_end = self.span(following)[0]
        elif method.args.kwonlyargs or method.args.vararg or method.args.kwarg:
            rest = self.source[arg_end : self.line_offsets[method.end_lineno]]
            arg_end += len(rest) - len(rest.lstrip(", \n"))
        edits.append(_Edit(arg_start - start, arg_end - start, ""))
        return _dedent(self.apply(text, edits), method.col_offset, self).rstrip("\n")

    @staticmethod
    def apply(text: str, edits: list[_Edit]) -> str:
        for edit in sorted(edits, key=lambda e: e.start, reverse=True):
            text = text[: edit.start] + edit.text + text[edit.end :]
        return text


def _dedent(text: str, columns: int, rewriter: _Rewriter) -> str:
    lines = text.splitlines(keepends=True)
    out = []
    for line in lines:
        if not line.strip():
            out.append(line.lstrip(" \t") if line.endswith("\n") else "")
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent < columns:
            rewriter.refuse("a multi-line string or continuation line starts left of its method")
            return text
        out.append(line[columns:])
    return "".join(out)


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_bare_call(node: ast.AST | None, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == name
        and not node.args
        and not node.keywords
    )


def _is_set_model(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "set_model") or (
        isinstance(func, ast.Attribute) and func.attr == "set_model"
    )


def _self_attribute(node: ast.AST | None) -> str | None:
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    ):
        return node.attr
    return None
