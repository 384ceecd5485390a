"""--mcp: the tabs' main endpoints as MCP tools, and nothing else (no Models panel, no helpers).

Gradio's MCP server (``launch(mcp_server=True)``) makes a tool of every public endpoint, named after
its Python function, and describes it from the function's docstring. We want exactly one tool per
tab, named as the API endpoint, so ``narrow_tools`` rewrites the server's tool table after launch.
That table (``GradioMCPServer.tool_to_endpoint``) is not public API: this is the one place that
touches it, and tests/test_mcp.py pins what it does, so a Gradio upgrade fails there loudly.
"""

from __future__ import annotations

from typing import Any

# api_name of each tab's main endpoint; each becomes a tool of the same name.
TOOLS = ("transcribe", "classify_image", "classify_text", "answer_document")


def narrow_tools(demo: Any, endpoints: tuple[str, ...] = TOOLS) -> dict[str, str]:
    """Keep only these endpoints as MCP tools, named after them (with Gradio's Space prefix); returns the table."""
    server = getattr(demo, "mcp_server_obj", None)
    if server is None:
        raise RuntimeError(f"the MCP server did not start: {getattr(demo, 'mcp_error', None) or 'unknown reason'}")
    present = {fn.api_name for fn in demo.fns.values()}
    table = {server.tool_prefix + name: f"/{name}" for name in endpoints if name in present}
    server.tool_to_endpoint = table
    server.pop_returned_state = _keep_stateless_results(server.pop_returned_state)
    return table


def _keep_stateless_results(pop_returned_state: Any) -> Any:
    """Gradio 6.31 pops gr.State outputs from a queued tool's result by position, but that result came
    through gradio_client, which already left the State out: the pop fails ('pop index out of range')
    for any endpoint with a State output (Speech's and Document's). Such a result is returned as it is."""

    def pop(components: Any, data: Any) -> Any:
        try:
            return pop_returned_state(components, list(data))
        except IndexError:
            return data

    return pop
