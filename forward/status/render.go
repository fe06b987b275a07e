package status

import (
	"bytes"
	"fmt"
	"html"
	"strings"
	"time"
)

// The page is written by plain Go code rather than html/template: the
// template engine calls methods by name through reflect, which makes the
// linker keep every exported method of every type in the binary (2 MB on
// ARMv6, measured). Safety comes from the writer instead: markup is a type
// that only string constants convert to implicitly, so a string from a mail
// can only reach the page through text(), which escapes it; and every
// attribute value is quoted.

// markup is HTML written as is. Only constants (the page's own markup)
// become markup without an explicit conversion; none is done below.
type markup string

// page is an HTML document being written.
type page struct{ b bytes.Buffer }

// m writes the page's own markup.
func (p *page) m(s markup) { p.b.WriteString(string(s)) }

// text writes s as text (or as a quoted attribute's value): <, >, &, ' and
// " are escaped, so it can never open a tag or leave an attribute.
func (p *page) text(s string) { p.b.WriteString(html.EscapeString(s)) }

func (p *page) num(n int64) { p.b.WriteString(fmt.Sprint(n)) }

// hidden token field of every form.
func (p *page) token(token string) {
	p.m(`<input type="hidden" name="token" value="`)
	p.text(token)
	p.m(`">`)
}

// timeTag writes a <time> element showing shown.
func (p *page) timeTag(t time.Time, shown string) {
	p.m(`<time datetime="`)
	p.text(t.UTC().Format(time.RFC3339))
	p.m(`">`)
	p.text(shown)
	p.m(`</time>`)
}

// plural is "1 alert" or "2 alerts".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// localURL tells whether u is a path on this server (a snapshot's URL from
// the device registry): no scheme, no other host.
func localURL(u string) bool {
	return strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") && !strings.ContainsAny(u, "\\\"'<> ")
}

// renderPage writes the whole page.
func renderPage(p *page, v View) {
	p.m(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgesink</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header>
<h1>edgesink</h1>
<span class="live" id="live" title="live updates">●</span>
`)
	if v.Login {
		p.m(`<form method="post" action="/logout" class="logout">`)
		p.token(v.Token)
		p.m(`<button>Log out `)
		p.text(v.User)
		p.m(`</button></form>`)
	}
	p.m("</header>\n<main id=\"main\">")
	renderMain(p, v)
	p.m("</main>\n</body>\n</html>\n")
}

// renderMain writes the part live updates replace.
func renderMain(p *page, v View) {
	p.m("\n<section id=\"devices\">\n<h2>Devices <small>")
	p.num(int64(len(v.Devices)))
	p.m("</small></h2>\n")
	if len(v.Devices) == 0 {
		p.m(`<p class="empty">No device has sent mail since edgesink started. Point a device at the SMTP address below, or run <code>edgesink send-test</code>.</p>`)
	} else {
		p.m(`<ul class="cards">`)
		for _, d := range v.Devices {
			p.m("\n<li class=\"card device\">")
			if d.Snapshot != "" && localURL(d.Snapshot) {
				p.m(`<img class="thumb" src="`)
				p.text(d.Snapshot)
				p.m(`" alt="latest snapshot" loading="lazy">`)
			}
			p.m(`<div class="name">`)
			p.text(d.Name)
			p.m(`</div><div class="meta">`)
			if d.Template != "" {
				p.m(`template `)
				p.text(d.Template)
				p.m(` · `)
			}
			if d.LastEvent != "" {
				p.m(`<b>`)
				p.text(d.LastEvent)
				p.m(`</b> `)
			}
			p.timeTag(d.LastAt, ago(d.LastAt))
			p.m(`</div><div class="meta">`)
			p.text(plural(d.Today, "alert"))
			p.m(` today</div></li>`)
		}
		p.m("\n</ul>")
	}
	p.m("\n</section>\n")

	p.m("<section id=\"alerts\">\n<h2>Recent alerts <small>")
	p.num(int64(len(v.Alerts)))
	p.m("</small></h2>\n")
	if len(v.Alerts) == 0 {
		p.m(`<p class="empty">No alert yet.</p>`)
	} else {
		p.m(`<ol class="alerts">`)
		for _, a := range v.Alerts {
			p.m("\n<li class=\"alert\" data-id=\"")
			p.text(a.ID)
			p.m(`"><div class="line">`)
			p.timeTag(a.At, when(a.At))
			p.m(` <span class="device">`)
			p.text(a.Device)
			p.m(`</span>`)
			if a.Event != "" {
				p.m(` <span class="event">`)
				p.text(a.Event)
				p.m(`</span>`)
			}
			if a.ReplayOf != "" {
				p.m(` <span class="tag">replay of `)
				p.text(a.ReplayOf)
				p.m(`</span>`)
			}
			p.m(`</div><div class="subject">`)
			p.text(a.Subject)
			p.m(`</div><div class="outputs">`)
			for _, d := range a.Deliveries {
				p.m(`<span class="state `)
				p.text(d.State)
				p.m(`" title="`)
				p.text(d.Error)
				p.m(`">`)
				p.text(d.Output + ": " + d.State)
				if d.State == "retrying" {
					p.text(" since " + when(d.Since))
				}
				p.m(`</span> `)
			}
			p.m(`</div><details><summary>alert JSON`)
			if a.HasRaw {
				p.m(` · <a href="/raw/`)
				p.text(a.ID)
				p.m(`.eml" download>raw mail</a>`)
			}
			p.m(`</summary><pre>`)
			p.text(a.JSON)
			p.m(`</pre></details></li>`)
		}
		p.m("\n</ol>")
	}
	p.m("\n</section>\n")

	if q := v.Queue; q != nil {
		p.m("<section id=\"queue\">\n<h2>Queue</h2>\n<dl class=\"facts\"><dt>queued</dt><dd>")
		p.num(int64(q.Stats.Queued))
		p.m(`</dd><dt>oldest</dt><dd>`)
		if q.OldestAt != "" {
			p.text(q.OldestAt)
		} else {
			p.m(`—`)
		}
		p.m(`</dd><dt>size</dt><dd>`)
		p.text(size(q.Stats.Bytes))
		p.m(`</dd><dt>dead letters</dt><dd>`)
		p.num(int64(q.Stats.Dead))
		p.m("</dd></dl>\n")
		if q.Err != "" {
			p.m(`<p class="error">`)
			p.text(q.Err)
			p.m(`</p>`)
		}
		if len(q.Dead) > 0 {
			p.m(`<ol class="alerts dead">`)
			for _, d := range q.Dead {
				p.m("\n<li class=\"alert\" data-id=\"")
				p.text(d.ID)
				p.m(`"><div class="line">`)
				p.timeTag(d.At, when(d.At))
				p.m(` <span class="device">`)
				p.text(d.Device)
				p.m(`</span> <span class="state dead">`)
				p.text(fmt.Sprintf("%s gave up after %d", d.Output, d.Attempts))
				p.m(`</span></div><div class="subject">`)
				p.text(d.Subject)
				p.m(`</div><div class="reason">`)
				p.text(d.Reason)
				p.m(`</div><div class="actions">`)
				deadForm(p, d.ID, "retry", v.Token, `<button>Retry</button>`)
				if d.HasRaw {
					deadForm(p, d.ID, "replay", v.Token, `<button>Replay mail</button>`)
					p.m(`<a class="button" href="/raw/`)
					p.text(d.ID)
					p.m(`.eml" download>.eml</a>`)
				}
				deadForm(p, d.ID, "drop", v.Token, `<button class="danger">Drop</button>`)
				p.m(`</div></li>`)
			}
			p.m("\n</ol>")
		}
		p.m("\n</section>\n")
	}

	p.m("<section id=\"outputs\">\n<h2>Outputs</h2>\n<ul class=\"cards\">")
	for _, o := range v.Outputs {
		p.m("\n<li class=\"card output\"><div class=\"name\">")
		p.text(o.Name)
		if o.Up {
			p.m(` <span class="state delivered">up</span></div>`)
		} else {
			p.m(` <span class="state dead">down</span></div>`)
		}
		if !o.Since.IsZero() {
			p.m(`<div class="meta">`)
			if o.Up {
				p.m(`connected since `)
			} else {
				p.m(`down since `)
			}
			p.text(when(o.Since))
			p.m(`</div>`)
		}
		if o.Detail != "" {
			p.m(`<div class="meta">`)
			p.text(o.Detail)
			p.m(`</div>`)
		}
		if o.LastError != "" {
			p.m(`<div class="meta error">last error: `)
			p.text(o.LastError)
			p.m(`</div>`)
		}
		p.m(`</li>`)
	}
	if v.Broker >= 0 {
		p.m("\n<li class=\"card output\"><div class=\"name\">embedded broker</div><div class=\"meta\">")
		p.text(plural(v.Broker, "client") + " connected")
		p.m(`</div></li>`)
	}
	p.m("\n</ul>\n</section>\n")

	p.m("<section id=\"about\">\n<h2>This edgesink</h2>\n<dl class=\"facts\"><dt>version</dt><dd>")
	p.text(v.Info.Version)
	p.m(`</dd><dt>up</dt><dd>`)
	p.text(v.Uptime + " (since " + when(v.Started) + ")")
	p.m(`</dd><dt>config</dt><dd>`)
	if v.Info.ConfigPath != "" {
		p.text(v.Info.ConfigPath)
	} else {
		p.m(`built-in defaults`)
	}
	p.m(`</dd>`)
	for _, l := range v.Info.Listening {
		p.m(`<dt>listening</dt><dd>`)
		p.text(l)
		p.m(`</dd>`)
	}
	p.m("</dl>\n<p class=\"links\"><a href=\"/metrics\">metrics</a> · <a href=\"/readyz\">readiness</a></p>\n</section>\n")
}

// deadForm is one action on a dead letter: a POST with the token.
func deadForm(p *page, id, action, token string, button markup) {
	p.m(`<form method="post" action="/dead/`)
	p.text(id)
	p.m(`/`)
	p.text(action)
	p.m(`">`)
	p.token(token)
	p.m(button)
	p.m(`</form>`)
}

// renderLogin writes the login form.
func renderLogin(p *page, errMsg string) {
	p.m(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgesink: log in</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body class="login">
<form method="post" action="/login" class="card">
<h1>edgesink</h1>
`)
	if errMsg != "" {
		p.m(`<p class="error">`)
		p.text(errMsg)
		p.m(`</p>`)
	}
	p.m(`<label>User <input name="user" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button>Log in</button>
</form>
</body>
</html>
`)
}
