"""The dashboard's building blocks: the page shell, tables, bars, times, CSS and the live-update script.

Role: :mod:`edgerm.master.dashboard` composes pages from these. Every page
is complete HTML rendered on the server (useful with JavaScript off); the
one inline script then re-fetches the same URL as JSON every few seconds
and re-binds the page: an element with ``data-k="a.b"`` gets that value as
text, ``data-w`` sets a bar's width in percent, ``data-t`` a time, and a
``<tbody data-list="rows" data-tpl="id">`` is rebuilt from its
``<template id="id">`` for each item of the list, so the rows the server
rendered and the rows the script renders come from one :class:`Table`.

Rules:
- Every value is escaped here (:func:`esc`) on the server, and set with
  ``textContent`` or as an attribute by the script, never as HTML.
- Link targets are built from a pattern with ``{key}`` holes filled with
  URL-encoded values, on both sides.
- No external assets: the CSS and the script are inline (the master may
  have no Internet access).
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import edgerm

Json = Mapping[str, object]


def esc(value: object) -> str:
    """Text for HTML (content and quoted attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def pick(data: object, path: str) -> object:
    """``data["a"]["b"]`` for ``"a.b"`` (list indexes allowed); None where the path ends early."""
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def href(pattern: str, item: object) -> str:
    """``/ui/tasks/{id}`` with ``{id}`` from ``item``, URL-encoded."""
    out, rest = [], pattern
    while "{" in rest:
        head, _, tail = rest.partition("{")
        key, _, rest = tail.partition("}")
        out.append(head + quote(str(pick(item, key) or ""), safe=""))
    out.append(rest)
    return "".join(out)


def ago(then: float | None, now: float) -> str:
    if not then:
        return "-"
    d = now - then
    if d < 0:
        return "just now"
    if d < 60:
        return f"{d:.0f} s ago"
    if d < 3600:
        return f"{d / 60:.0f} min ago"
    if d < 86400:
        return f"{d / 3600:.1f} h ago"
    return f"{d / 86400:.1f} d ago"


def utc(then: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(then)) if then else ""


def when(then: float | None, now: float, key: str = "") -> str:
    """A time element: relative text, absolute UTC as its title; ``key`` binds it for live updates."""
    bind = f' data-t="{esc(key)}"' if key else ""
    stamp = esc(then or "")
    return f'<time{bind} data-s="{stamp}" title="{esc(utc(then))}">{esc(ago(then, now))}</time>'


def state_badge(value: object, key: str = "") -> str:
    bind = f' data-k="{esc(key)}" data-badge="1"' if key else ""
    return f'<span class="st st-{esc(value)}"{bind}>{esc(value)}</span>'


def bar(used_pct: object, offered_pct: object = None, key: str = "", offered_key: str = "") -> str:
    used = f'<span class="used" style="width:{_pct(used_pct)}%"{_bind("w", key)}></span>'
    offered = ""
    if offered_pct is not None or offered_key:
        offered = f'<span class="offered" style="width:{_pct(offered_pct)}%"{_bind("w", offered_key)}></span>'
    return f'<div class="bar">{used}{offered}</div>'


def _pct(value: object) -> str:
    try:
        return f"{max(0.0, min(100.0, float(value))):.1f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "0"


def _bind(kind: str, key: str) -> str:
    return f' data-{kind}="{esc(key)}"' if key else ""


@dataclass(frozen=True, slots=True)
class Col:
    """A table column: ``key`` of each item, shown as ``kind`` (text, code, state, time, bar, link)."""

    label: str
    key: str
    kind: str = "text"
    link: str = ""  # href pattern for kind "link" (or any kind: wraps the cell's content)
    bar: str = ""  # for kind "bar": the key of the percentage (the cell's text is ``key``)
    cls: str = ""  # a CSS class for the cell (e.g. "num", "wrap")


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # the template's id
    cols: Sequence[Col]
    empty: str = "nothing yet"

    def _cell(self, col: Col, item: Json | None, now: float) -> str:
        value = pick(item, col.key) if item is not None else None
        k = col.key
        if col.kind == "state":
            inner = state_badge(value or "", k)
        elif col.kind == "time":
            stamp = value if isinstance(value, int | float) else None
            inner = when(stamp, now, k)
        elif col.kind == "bar":
            pct = pick(item, col.bar) if item is not None else 0
            inner = f'<span class="bartext" data-k="{esc(k)}">{esc(value)}</span>{bar(pct, key=col.bar)}'
        elif col.kind == "code":
            inner = f'<code data-k="{esc(k)}" title="{esc(value)}">{esc(value)}</code>'
        else:
            inner = f'<span data-k="{esc(k)}">{esc(value)}</span>'
        if col.link:
            target = href(col.link, item) if item is not None else ""
            inner = f'<a href="{esc(target)}" data-href="{esc(col.link)}">{inner}</a>'
        cls = f' class="{esc(col.cls)}"' if col.cls else ""
        return f"<td{cls}>{inner}</td>"

    def row(self, item: Json | None, now: float) -> str:
        return "<tr>" + "".join(self._cell(c, item, now) for c in self.cols) + "</tr>"

    def render(self, items: Sequence[Json], now: float, list_key: str) -> str:
        head = "".join(f"<th>{esc(c.label)}</th>" for c in self.cols)
        rows = "".join(self.row(i, now) for i in items)
        empty = f'<p class="empty" data-empty="{esc(list_key)}"{"" if not items else " hidden"}>{esc(self.empty)}</p>'
        template = f'<template id="tpl-{esc(self.name)}">{self.row(None, now)}</template>'
        return (
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody data-list="{esc(list_key)}" data-tpl="tpl-{esc(self.name)}">{rows}</tbody></table></div>'
            f"{empty}{template}"
        )


NAV = (
    ("/", "Home"),
    ("/ui/agents", "Agents"),
    ("/ui/frameworks", "Frameworks"),
    ("/ui/tasks", "Tasks"),
    ("/ui/dataflows", "Dataflows"),
)


def page(title: str, active: str, body: str, data: Json, *, live: bool = True, interval: float = 2.0) -> str:
    """A whole page: shell, navigation, ``body`` (already escaped HTML) and the live-update script."""
    nav = "".join(f'<a href="{esc(url)}"{" class=on" if url == active else ""}>{esc(label)}</a>' for url, label in NAV)
    script = f"<script>{SCRIPT.replace('__INTERVAL__', str(int(interval * 1000)))}</script>" if live else ""
    shape = f' data-shape="{esc(data["shape"])}"' if "shape" in data else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · edgerm</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body{shape}><header><b class="logo">edgerm</b><nav>{nav}</nav>
<span class="live" id="live" title="updates every {interval:g} s">{"live" if live else ""}</span>
<span class="ver">v{esc(edgerm.__version__)}</span></header>
<main><h1>{esc(title)}</h1>{body}</main>{script}</body></html>"""


CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2330;background:#f4f6f9}header{display:flex;align-items:center;gap:18px;padding:10px 24px;
background:#1f2a3c;color:#dfe6f0}header .logo{font-size:17px;letter-spacing:.5px;color:#fff}
nav a{color:#b9c6d8;text-decoration:none;padding:6px 10px;border-radius:5px}nav a:hover{background:#2c3a52}
nav a.on{background:#3b82f6;color:#fff}.live{margin-left:auto;font-size:12px;color:#8fd19e}
.live.stale{color:#f0b35b}.ver{font-size:12px;color:#8894a7}main{padding:18px 24px;max-width:1400px}
h1{font-size:20px;margin:4px 0 14px}h2{font-size:15px;margin:22px 0 8px;color:#394457}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .n{font-size:26px;font-weight:600}.card .l{color:#657086;font-size:12px;text-transform:uppercase;
letter-spacing:.4px}.card .sub{color:#657086;font-size:12px}.card.warn .n{color:#c2410c}.card.bad .n{color:#b91c1c}
.card.zero .n{color:#1d2330}
.panel{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08);margin-bottom:12px}
.util{display:grid;grid-template-columns:90px 1fr 260px;gap:10px;align-items:center;margin:6px 0}
.bar{position:relative;height:12px;background:#e7ebf1;border-radius:6px;overflow:hidden;display:flex;min-width:60px}
.bar .used{background:#3b82f6;height:100%}.bar .offered{background:#a5c8fb;height:100%}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px;vertical-align:-1px}
.scroll{overflow-x:auto;background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%}th,td{padding:6px 10px;text-align:left;vertical-align:top;
border-bottom:1px solid #edf0f4;white-space:nowrap}th{background:#f8f9fb;font-weight:600;color:#4b5567;
font-size:12px;text-transform:uppercase;letter-spacing:.3px}tbody tr:hover{background:#f8fafd}
td.wrap{white-space:normal;min-width:180px;max-width:360px;overflow-wrap:anywhere}a code{color:#2563eb}
td.num{text-align:right}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;color:#334;display:inline-block;max-width:150px;
overflow:hidden;text-overflow:ellipsis;vertical-align:bottom}td .bar{margin-top:3px;height:6px}
.bartext{font-size:12px}a{color:#2563eb;text-decoration:none}a:hover{text-decoration:underline}
.st{display:inline-block;padding:1px 8px;border-radius:10px;font-size:11px;font-weight:600;
background:#e5e7eb;color:#374151}.st-RUNNING,.st-ACTIVE{background:#dcfce7;color:#166534}
.st-FINISHED,.st-COMPLETED{background:#e0e7ff;color:#3730a3}.st-FAILED,.st-ERROR,.st-LOST{background:#fee2e2;
color:#991b1b}.st-KILLED,.st-KILLING,.st-DISCONNECTED{background:#fef3c7;color:#92400e}
.st-STAGING,.st-STARTING,.st-SILENT{background:#e0f2fe;color:#075985}
.st-UNREACHABLE{background:#ffedd5;color:#9a3412}.empty{color:#7a8496;padding:8px 2px}
form.filters{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:10px;align-items:end}
form.filters label{font-size:12px;color:#4b5567;display:flex;flex-direction:column;gap:2px}
input,select,button{font:inherit;padding:4px 8px;border:1px solid #cfd6e0;border-radius:5px;background:#fff}
button{background:#3b82f6;color:#fff;border-color:#3b82f6;cursor:pointer}.pager{margin:10px 0;color:#4b5567}
.pager a{margin:0 6px}dl.kv{display:grid;grid-template-columns:140px 1fr;gap:4px 14px;margin:0}
dl.kv dt{color:#657086}dl.kv dd{margin:0;overflow-wrap:anywhere}
pre.log{background:#0f172a;color:#e2e8f0;padding:10px 12px;border-radius:8px;max-height:360px;overflow:auto;
font:12px/1.4 ui-monospace,Menlo,monospace;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
td.attrs{font-size:12px;color:#4b5567;min-width:150px;max-width:230px}
pre.log:empty::before{content:"(no output)";color:#64748b}
.note{color:#657086;font-size:12px}.graph{overflow-x:auto;background:#fff;border-radius:8px;padding:8px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}.graph svg text{font:12px system-ui,sans-serif;fill:#1d2330}
.graph svg .op{fill:#f8fafc;stroke:#94a3b8}.graph svg .op.ok{stroke:#16a34a}.graph svg .op.bad{stroke:#dc2626}
.graph svg .title{font-weight:600;font-size:13px}.graph svg .dim{fill:#64748b}.graph svg .edge{stroke:#64748b;
fill:none;stroke-width:1.5}.graph svg .warn{fill:#b91c1c}
"""

SCRIPT = r"""
"use strict";
(function(){
const INTERVAL=__INTERVAL__;
function pick(d,p){for(const k of p.split(".")){if(d==null)return null;d=d[k];}return d;}
function fill(pat,item){return pat.replace(/\{([^}]+)\}/g,(_,k)=>encodeURIComponent(pick(item,k)??""));}
function ago(t,now){if(!t)return "-";const d=now-t;if(d<0)return "just now";if(d<60)return Math.round(d)+" s ago";
if(d<3600)return Math.round(d/60)+" min ago";if(d<86400)return (d/3600).toFixed(1)+" h ago";
return (d/86400).toFixed(1)+" d ago";}
function utc(t){return t?new Date(t*1000).toISOString().replace("T"," ").replace(/\.\d+Z$/," UTC"):"";}
function pct(v){v=Number(v);return isFinite(v)?Math.max(0,Math.min(100,v)).toFixed(1):"0";}
function bind(root,data,now,top){
  const mine=el=>!top||!el.closest("tbody[data-list]");
  for(const el of root.querySelectorAll("[data-k]")){if(!mine(el))continue;
    const v=pick(data,el.dataset.k);const s=v==null?"":String(v);
    if(el.textContent!==s)el.textContent=s;
    if(el.dataset.badge)el.className="st st-"+s.replace(/[^A-Z_]/g,"");
    if(el.parentElement.classList.contains("card"))el.parentElement.classList.toggle("zero",s==="0");
    if(el.tagName==="CODE")el.title=s;}
  for(const el of root.querySelectorAll("[data-w]"))if(mine(el))el.style.width=pct(pick(data,el.dataset.w))+"%";
  for(const el of root.querySelectorAll("[data-t]")){if(!mine(el))continue;const t=pick(data,el.dataset.t);
    el.dataset.s=t??"";el.textContent=ago(t,now);el.title=utc(t);}
  for(const el of root.querySelectorAll("a[data-href]"))if(mine(el))el.href=fill(el.dataset.href,data);}
function lists(data,now){
  for(const body of document.querySelectorAll("tbody[data-list]")){
    const items=pick(data,body.dataset.list)||[];const tpl=document.getElementById(body.dataset.tpl);
    const rows=[];for(const item of items){const row=tpl.content.firstElementChild.cloneNode(true);
      bind(row,item,now);rows.push(row);}
    body.replaceChildren(...rows);
    const empty=document.querySelector('[data-empty="'+body.dataset.list+'"]');if(empty)empty.hidden=items.length>0;}}
function apply(data){const now=data.now||Date.now()/1000;
  for(const el of document.querySelectorAll("[data-scope]"))bind(el,data,now,true);
  lists(data,now);}
const live=document.getElementById("live");
async function poll(){
  try{const r=await fetch(location.href,{headers:{Accept:"application/json"},cache:"no-store"});
    if(!r.ok)throw new Error(r.status);const data=await r.json();
    const shape=document.body.dataset.shape;
    if(shape&&String(pick(data,"shape"))!==shape){location.reload();return;}
    apply(data);live.textContent="live";live.classList.remove("stale");
    document.dispatchEvent(new CustomEvent("edgerm:data",{detail:data}));}
  catch(e){live.textContent="reconnecting";live.classList.add("stale");}
  setTimeout(poll,INTERVAL);}
setTimeout(poll,INTERVAL);
})();
"""
