# ruff: noqa: E501  (HTML and CSS read better unwrapped)
"""The ops app's Jinja2 templates (autoescaped HTML), kept in Python so they ship with the package."""

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}mlpipe{% endblock %}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:16px 24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;padding-top:12px;border-top:1px solid #d0d7de}
h3{font-size:14px;margin:18px 0 6px;text-transform:uppercase;letter-spacing:.04em;color:#57606a}
table{border-collapse:collapse;font-size:13px;margin:4px 0} th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#57606a;font-size:12px} .error{color:#a40e26;background:#ffebe9;padding:8px 12px;border-radius:6px}
.ok{color:#116329} .breach,.failed{color:#a40e26;font-weight:600} .running,.queued{color:#9a6700}
.success{color:#116329;font-weight:600} tr.drifting td{background:#fff1e5} .badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:#ddf4ff;margin-right:4px}
.notice{background:#ddf4ff;padding:8px 12px;border-radius:6px} form.inline{display:inline}
button{font:inherit;padding:4px 12px;border-radius:6px;border:1px solid #d0d7de;background:#f6f8fa;cursor:pointer}
button.danger{background:#cf222e;color:#fff;border-color:#a40e26} input[type=text]{font:inherit;padding:3px 6px;width:320px}
a{color:#0969da}
</style></head><body>
<header><h1>{% block heading %}mlpipe{% endblock %}</h1>
{% if user %}<div class="muted">signed in as <span id="user">{{ user }}</span></div>{% endif %}</header>
{% block body %}{% endblock %}
</body></html>
"""

MODELS = """{% extends "layout" %}
{% block title %}Models · mlpipe{% endblock %}
{% block heading %}Models{% endblock %}
{% block body %}
{% if not sections %}<p class="notice">No pipelines you may see in {{ folder }}.</p>{% endif %}
{% for s in sections %}{% set p = s.pipeline %}
<section class="pipeline" id="pipeline-{{ p.name }}" data-pipeline="{{ p.name }}">
<h2>{{ p.name }} <span class="muted">registered model
  <a href="{{ mlflow_ui }}/#/models/{{ p.model|urlencode }}" target="_blank" rel="noopener">{{ p.model }}</a></span></h2>
{% if s.spec_error %}<p class="error">spec {{ p.source }} does not load: {{ s.spec_error }}</p>{% else %}

<h3>Champion and challenger</h3>
{% set reg = s.registry %}
{% if s.registry_error %}<p class="error">{{ s.registry_error }}</p>
{% elif reg.error %}<p class="notice">{{ reg.error }}</p>
{% else %}
<table class="side-by-side"><tr><th></th>{% for label, v in s.columns %}<th>{{ label }}</th>{% endfor %}</tr>
<tr><th>Version</th>{% for label, v in s.columns %}<td class="version" data-role="{{ label }}">{% if v %}
  <a href="{{ mlflow_ui }}/#/models/{{ p.model|urlencode }}/versions/{{ v.number }}" target="_blank" rel="noopener">v{{ v.number }}</a>
  {% for a in v.aliases %}<span class="badge">{{ a }}</span> {% endfor %}{% else %}—{% endif %}</td>{% endfor %}</tr>
{% for label, tag in s.metrics %}<tr><th>{{ label }}</th>{% for _, v in s.columns %}<td class="num" data-metric="{{ tag }}">{% if v and v.metric(tag) is not none %}{{ "%.4f"|format(v.metric(tag)) }}{% else %}—{% endif %}</td>{% endfor %}</tr>{% endfor %}
{% for label, tag in facts %}<tr><th>{{ label }}</th>{% for _, v in s.columns %}<td>{{ v.tags.get(tag, "—") if v else "—" }}</td>{% endfor %}</tr>{% endfor %}
<tr><th>Model card</th>{% for _, v in s.columns %}<td class="model-card">{% for label, tag in card_links if v and v.tags.get(tag) %}<a href="{{ artifact(v.tags[tag]) }}" target="_blank" rel="noopener">{{ label }}</a>{% if not loop.last %} · {% endif %}{% else %}—{% endfor %}</td>{% endfor %}</tr>
<tr><th>Registered</th>{% for _, v in s.columns %}<td>{{ v.created.strftime("%Y-%m-%d %H:%M UTC") if v and v.created else "—" }}</td>{% endfor %}</tr>
</table>

<h3>Trend over the last {{ reg.versions|length }} versions</h3>
{% if s.chart %}<div class="chart">{{ s.chart }}</div>{% else %}<p class="muted">no versions with metrics yet</p>{% endif %}
{% endif %}

<h3>Last training run</h3>
{% if s.training_error %}<p class="error">{{ s.training_error }}</p>
{% elif not s.training %}<p class="muted">no run of {{ s.dag_id }} yet</p>
{% else %}{% set t = s.training %}
<p class="training"><span class="{{ t.state }}">{{ t.state }}</span> ·
 <a href="{{ airflow }}/dags/{{ t.dag_id|urlencode }}/runs/{{ t.run_id|urlencode }}" target="_top">{{ t.run_id }}</a>
 · {{ t.run_type }} · started {{ t.start_date.strftime("%Y-%m-%d %H:%M:%S UTC") if t.start_date else "—" }}
 · ended {{ t.end_date.strftime("%Y-%m-%d %H:%M:%S UTC") if t.end_date else "—" }}</p>
{% endif %}

<h3>Last monitoring result</h3>
{% set m = s.monitoring %}
{% if s.monitoring_error %}<p class="error">{{ s.monitoring_error }}</p>
{% elif not m %}<p class="muted monitoring-none">no monitoring run yet</p>
{% elif m.missing %}<p class="notice">{{ m.missing }}</p>
{% else %}
<p class="monitoring">status <span class="{{ m.status }}">{{ m.status }}</span>
 {% if m.champion_version is not none %}· champion v{{ m.champion_version }}{% endif %}
 {% if m.window %}· window {{ m.window.start }} → {{ m.window.end }}{% endif %}
 {% if m.generated_at %}· generated {{ m.generated_at }}{% endif %}
 {% if m.report_html %}· <a class="monitoring-report" href="{{ artifact(m.report_html) }}" target="_blank" rel="noopener">full report</a>{% endif %}</p>
{% if m.message %}<p>{{ m.message }}</p>{% endif %}
{% if m.reasons %}<ul class="reasons">{% for r in m.reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}
{% if m.rows %}<p class="muted">rows: {% for k, v in m.rows.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
{% if s.drift %}<table class="drift"><tr><th>Feature</th><th>Kind</th><th>PSI</th><th>KS</th><th>JS</th><th>New categories</th><th>Drifting</th><th>Why</th></tr>
{% for r in s.drift %}<tr class="{{ 'drifting' if r.drifting else '' }}"><td>{{ r.feature }}</td><td>{{ r.kind }}</td>
<td class="num">{{ "%.4f"|format(r.psi) if r.psi is not none else "—" }}</td><td class="num">{{ "%.4f"|format(r.ks) if r.ks is not none else "—" }}</td>
<td class="num">{{ "%.4f"|format(r.js) if r.js is not none else "—" }}</td><td class="num">{{ "%.2f%%"|format(100 * r.new_share) if r.new_share is not none else "—" }}</td>
<td>{{ "yes" if r.drifting else "no" }}</td><td>{{ r.why|join("; ") }}</td></tr>{% endfor %}</table>{% endif %}
{% if m.score %}<p class="muted">score drift: PSI {{ "%.4f"|format(m.score.psi) if m.score.psi is number else "—" }}{% if m.score.drifting %} <span class="breach">drifting</span>{% endif %}</p>{% endif %}
{% if m.quality %}{% set q = m.quality %}
<p class="quality">quality <span class="{{ q.status }}">{{ q.status }}</span> on {{ q.labels }} labelled rows
{% if q.overall %}: {% for k in quality_metrics if q.overall[k] is number %}{{ k }} {{ "%.4f"|format(q.overall[k]) }}{% if not loop.last %}, {% endif %}{% endfor %}{% endif %}</p>
{% endif %}
{% endif %}

<h3>Promotion history</h3>
{% if s.history_error %}<p class="error">{{ s.history_error }}</p>
{% elif not s.history %}<p class="muted">no promotions, rollbacks or deploys yet</p>
{% else %}
<table class="history"><tr><th>Time (UTC)</th><th>Action</th><th>Version</th><th>Who</th><th>Forced</th><th>Why</th></tr>
{% for e in s.history %}<tr class="event" data-action="{{ e.action }}"><td>{{ e.time }}</td><td>{{ e.action }}</td>
<td>{% if e.from_version is defined and e.to_version is defined %}v{{ e.from_version }} → v{{ e.to_version }}{% else %}v{{ e.version }}{% endif %}</td>
<td class="actor">{{ e.actor }}</td><td>{{ "yes" if e.forced else "" }}</td>
<td>{% if e.reason %}{{ e.reason }}{% elif e.reasons %}{{ e.reasons|join("; ") }}{% elif e.message %}{{ e.message }}{% endif %}</td></tr>{% endfor %}
</table>{% endif %}

<h3>Rollback</h3>
{% if reg and not reg.error and not s.registry_error %}
{% if not reg.previous or not reg.champion %}<p class="muted">no previous champion to roll back to</p>
{% elif s.may_rollback %}
<form class="rollback" method="post" action="{{ base }}/rollback">
 <input type="hidden" name="pipeline" value="{{ p.name }}">
 Give champion back from v{{ reg.champion.number }} to v{{ reg.previous.number }}; reason:
 <input type="text" name="reason" required maxlength="500" placeholder="why (recorded in the audit log)">
 <button type="submit">Roll back…</button></form>
{% else %}<p class="muted refused">{{ s.refusal }}</p>{% endif %}
{% endif %}
{% endif %}
</section>
{% endfor %}
<p class="muted">Prometheus figures: <a href="{{ base }}/metrics">{{ base }}/metrics</a></p>
{% endblock %}
"""

CONFIRM = """{% extends "layout" %}
{% block title %}Confirm rollback · mlpipe{% endblock %}
{% block heading %}Roll back {{ model }}?{% endblock %}
{% block body %}
<p class="notice">The champion of <b>{{ model }}</b> goes back from <b>v{{ champion }}</b> to <b>v{{ previous }}</b>.
Serving picks it up on its next reload. This is recorded in the audit log as done by <b>{{ user }}</b>.</p>
<p>Reason: <i>{{ reason }}</i></p>
<form class="confirm" method="post" action="{{ base }}/rollback">
 <input type="hidden" name="pipeline" value="{{ pipeline }}">
 <input type="hidden" name="reason" value="{{ reason }}">
 <input type="hidden" name="token" value="{{ token }}">
 <input type="hidden" name="confirm" value="yes">
 <button class="danger" type="submit" id="confirm">Yes, roll back</button>
 <a href="{{ base }}/">Cancel</a></form>
{% endblock %}
"""

MESSAGE = """{% extends "layout" %}
{% block title %}{{ heading }} · mlpipe{% endblock %}
{% block heading %}{{ heading }}{% endblock %}
{% block body %}
<p class="{{ kind }}" id="message">{{ message }}</p>
<p><a href="{{ base }}/">Back to Models</a></p>
{% endblock %}
"""

TEMPLATES = {"layout": LAYOUT, "models": MODELS, "confirm": CONFIRM, "message": MESSAGE}
