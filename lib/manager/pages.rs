//! The manager's HTML pages: self-contained (inline CSS and JavaScript, no external assets:
//! the network is closed), readable without JavaScript, refreshing themselves.
//!
//! - the index lists every registered torrent (size, seeders, leechers, completed, links)
//!   and holds the upload form (XHR `PUT /api/upload` with a progress bar); its table is
//!   refreshed from `/api/torrents` every 5 s so the form keeps its state;
//! - the detail page lists each peer as the tracker sees it (client decoded from the peer
//!   id, raw prefix beside it) and how the upload load is shared; it says whether this
//!   btrack seeds the torrent itself (`--seed`) or which `bseed` command would; it reloads
//!   itself every 5 s.
//!
//! Every value from a client (names, peer ids) goes through [`esc`].

use super::registry::Entry;
use super::{client_prefix, is_origin, sharing, App};
use crate::units::human_bytes;

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = r#"<style>
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:70em;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f3f3f3;padding:.1em .3em;word-break:break-all}
form{border:1px solid #ccc;padding:1em;border-radius:4px}
progress{width:20em}.err{color:#b00}.muted{color:#777}
.bar{display:inline-block;height:.8em;background:#4a8;vertical-align:middle}
</style>"#;

fn row(app: &App, e: &Entry) -> String {
    let v = app.tracker.store.view(&e.info_hash.0);
    let (s, l, c) = v.map(|v| (v.seeders, v.leechers, v.completed)).unwrap_or((0, 0, 0));
    let ih = e.info_hash.hex();
    format!(
        "<tr data-ih=\"{ih}\"><td><a href=\"/t/{ih}\">{}</a></td><td class=n>{}</td><td class=n>{s}</td><td class=n>{l}</td><td class=n>{c}</td><td><a href=\"/torrents/{ih}.torrent\">.torrent</a></td><td><code>{ih}</code></td></tr>",
        esc(&e.name),
        human_bytes(e.total_length)
    )
}

/// `GET /`.
pub fn index(app: &App) -> String {
    let rows: String = app.registry.list().iter().map(|e| row(app, e)).collect();
    // The token goes into a header for the upload and into a same-site cookie so that the
    // .torrent links work (with --token they carry the announce token); never into a URL.
    let admin = if app.cfg.admin_token.is_some() || app.tracker.cfg.token.is_some() {
        "<p><label>Token <input type=password id=admin autocomplete=off onchange=\"document.cookie='btrack_auth='+encodeURIComponent(this.value)+'; path=/; SameSite=Strict'\"></label> <span class=muted>(admin token for uploads; it or the announce token to download .torrent files)</span></p>"
    } else {
        "<input type=hidden id=admin value=\"\">"
    };
    let mode = if app.tracker.cfg.open { "open (tracks any torrent)" } else { "closed (tracks registered torrents only)" };
    format!(
        r##"<!doctype html><html lang=en><head><meta charset=utf-8><title>btrack</title>{STYLE}</head><body>
<h1>btrack — torrents</h1>
<p class=muted>Tracker mode: {mode}. Announce URL: <code id=announce>{announce}</code></p>
<h2>Share a file</h2>
<form id=upform onsubmit="return upload()">
<p><input type=file id=file name=file required> <label>Piece length <input id=piece size=8 placeholder="auto"></label> <label>Web seed <input id=webseed size=32 placeholder="http://artifacts.lan/images/ (optional)"></label> <button type=submit id=go>Upload and make torrent</button></p>
{admin}
<p><progress id=prog max=1 value=0></progress> <span id=status></span></p>
<div id=result hidden><p>Torrent ready: info hash <code id=result-ih></code> — <a id=result-torrent href="#">download .torrent</a> — <a id=result-page href="#">swarm page</a></p>
<p>Seed it from the origin with:<br><code id=result-cmd></code></p></div>
</form>
<h2>Registered torrents (<span id=count>{count}</span>)</h2>
<table><thead><tr><th>Name</th><th class=n>Size</th><th class=n>Seeders</th><th class=n>Leechers</th><th class=n>Completed</th><th>Torrent</th><th>Info hash</th></tr></thead>
<tbody id=torrents>{rows}</tbody></table>
<p class=muted>This page refreshes its table every 5 seconds. <a href="/metrics">metrics</a> · <a href="/api/torrents">JSON</a></p>
<script>
function esc(s){{return String(s).replace(/[&<>"']/g,function(c){{return {{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}}[c];}});}}
function human(n){{var u=['B','KiB','MiB','GiB','TiB'],i=0;while(n>=1024&&i<4){{n/=1024;i++;}}return i?n.toFixed(2)+' '+u[i]:n+' B';}}
function refresh(){{var x=new XMLHttpRequest();x.open('GET','/api/torrents');x.onload=function(){{if(x.status!=200)return;var l=JSON.parse(x.responseText),h='';
for(var i=0;i<l.length;i++){{var t=l[i];h+='<tr data-ih="'+t.info_hash+'"><td><a href="/t/'+t.info_hash+'">'+esc(t.name)+'</a></td><td class=n>'+human(t.size)+'</td><td class=n>'+t.seeders+'</td><td class=n>'+t.leechers+'</td><td class=n>'+t.completed+'</td><td><a href="/torrents/'+t.info_hash+'.torrent">.torrent</a></td><td><code>'+t.info_hash+'</code></td></tr>';}}
document.getElementById('torrents').innerHTML=h;document.getElementById('count').textContent=l.length;}};x.send();}}
setInterval(refresh,5000);
function upload(){{var f=document.getElementById('file').files[0];if(!f)return false;
var st=document.getElementById('status'),pr=document.getElementById('prog'),go=document.getElementById('go');
var url='/api/upload?name='+encodeURIComponent(f.name);var pl=document.getElementById('piece').value.trim();if(pl)url+='&piece_length='+encodeURIComponent(pl);var ws=document.getElementById('webseed').value.trim();if(ws)url+='&web_seed='+encodeURIComponent(ws);
var x=new XMLHttpRequest();x.open('PUT',url);var tok=document.getElementById('admin').value;if(tok)x.setRequestHeader('X-Admin-Token',tok);
x.upload.onprogress=function(e){{if(e.lengthComputable){{pr.max=e.total;pr.value=e.loaded;st.textContent='uploading '+Math.floor(100*e.loaded/e.total)+'%';}}}};
x.upload.onload=function(){{st.textContent='hashing and registering…';}};
x.onload=function(){{go.disabled=false;if(x.status==200){{var ih=x.getResponseHeader('X-Info-Hash');st.className='';st.textContent='done: '+f.name;
document.getElementById('result-ih').textContent=ih;document.getElementById('result-torrent').href='/torrents/'+ih+'.torrent';
document.getElementById('result-page').href='/t/'+ih;document.getElementById('result-cmd').textContent=x.getResponseHeader('X-Bseed-Command')||'';
document.getElementById('result').hidden=false;refresh();}}else{{st.className='err';var m=x.responseText;try{{m=JSON.parse(m).error;}}catch(e){{}}st.textContent='failed: '+m;}}}};
x.onerror=function(){{go.disabled=false;st.className='err';st.textContent='failed: connection error';}};
go.disabled=true;st.className='';st.textContent='starting…';x.send(f);return false;}}
</script></body></html>"##,
        announce = esc(&app.tracker_announce_hint()),
        count = app.registry.len(),
    )
}

/// `GET /t/<ih>`.
pub fn detail(app: &App, e: &Entry) -> String {
    let ih = e.info_hash.hex();
    let v = app.tracker.store.view(&e.info_hash.0);
    let peers = v.as_ref().map(|v| v.peers.clone()).unwrap_or_default();
    let departed = v.as_ref().map(|v| v.departed.clone()).unwrap_or_default();
    let now = v.as_ref().map(|v| v.now).unwrap_or(0);
    let (s, l, c) = v.as_ref().map(|v| (v.seeders, v.leechers, v.completed)).unwrap_or((0, 0, 0));
    let sh = sharing(&peers, &departed, e.total_length);
    let mut sorted: Vec<(bool, &crate::tracker::store::Peer)> = peers.iter().map(|p| (false, p)).chain(departed.iter().map(|p| (true, p))).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.uploaded.cmp(&a.1.uploaded)).then(a.1.addr.cmp(&b.1.addr)));
    let rows: String = sorted
        .iter()
        .map(|&(gone, p)| {
            let share = if sh.total_uploaded == 0 { 0.0 } else { p.uploaded as f64 / sh.total_uploaded as f64 };
            let done = if e.total_length == 0 { 100.0 } else { 100.0 * (e.total_length.saturating_sub(p.left)) as f64 / e.total_length as f64 };
            format!(
                "<tr{}><td><code>{}</code></td><td>{} <code class=muted>{}</code>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:.1}%</td><td class=n>{:.1}% <span class=bar style=\"width:{:.0}px\"></span></td><td class=n>{} s ago{}</td></tr>",
                if gone { " class=muted" } else { "" },
                esc(&p.addr.to_string()),
                esc(&crate::sanitize::printable(&crate::peer::wire::client_from_peer_id(&p.peer_id))),
                esc(&client_prefix(&p.peer_id)),
                if is_origin(p) { " <b>origin</b>" } else { "" },
                human_bytes(p.uploaded),
                human_bytes(p.downloaded),
                human_bytes(p.left),
                done,
                share * 100.0,
                share * 100.0,
                now.saturating_sub(p.last),
                if gone { " (left)" } else { "" }
            )
        })
        .collect();
    use crate::seeder::Status;
    let cmd = match (crate::seeder::status(&e.info_hash), app.registry.bseed_command(e)) {
        (Some(Status::Seeding { port }), _) => format!(
            "<p id=seeded-here>This btrack seeds it (<code>btrack --seed</code>{}): no <code>bseed</code> needed.</p>",
            if port != 0 { format!(", port {port}") } else { String::new() }
        ),
        (Some(Status::Verifying), _) => "<p id=seeded-here>This btrack is checking the content and will seed it (<code>btrack --seed</code>).</p>".into(),
        (Some(Status::Failed(why)), _) => format!("<p id=seeded-here class=err>This btrack does not seed it: {}</p>", esc(&why)),
        (None, Some(c)) => format!("<p>Seed it from the origin with: <code id=bseed>{}</code></p>", esc(&c)),
        (None, None) => "<p class=muted>Content not in btrack's data directory: seed it with <code>bseed TORRENT PATH</code> where the file is.</p>".into(),
    };
    format!(
        r##"<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5><title>{name} — btrack</title>{STYLE}</head><body>
<p><a href="/">← all torrents</a></p>
<h1>{name}</h1>
<p>Size {size} in {pieces} pieces of {plen}. Info hash <code id=ih>{ih}</code>. <a href="/torrents/{ih}.torrent">Download .torrent</a></p>
{cmd}
<h2>Swarm</h2>
<p><span id=seeders>{s}</span> seeders, <span id=leechers>{l}</span> leechers, <span id=completed>{c}</span> completed downloads.</p>
<h2>How the upload load is shared</h2>
<p>Peers (including the {gone} that left, shown greyed) have uploaded <b>{total_up}</b> in all. The origin (peers that had the whole file without downloading) uploaded <b>{origin_up}</b> = <b id=origin-ratio>{ratio:.2}×</b> the file size{spread}.</p>
<table><thead><tr><th>Address</th><th>Client</th><th class=n>Uploaded</th><th class=n>Downloaded</th><th class=n>Left</th><th class=n>Have</th><th class=n>Share of uploads</th><th class=n>Last announce</th></tr></thead>
<tbody id=peers>{rows}</tbody></table>
<p class=muted>Refreshes every 5 seconds. Counters are what the peers last announced (downloading peers announce at least every 30 s, origins over HTTP every {live} s). <a href="/api/torrents/{ih}">JSON</a></p>
</body></html>"##,
        name = esc(&e.name),
        live = super::LIVE_INTERVAL,
        size = human_bytes(e.total_length),
        pieces = e.pieces,
        plen = human_bytes(e.piece_length),
        total_up = human_bytes(sh.total_uploaded),
        gone = departed.len(),
        origin_up = human_bytes(sh.origin_uploaded),
        ratio = sh.origin_ratio,
        spread = if sh.total_uploaded > 0 {
            format!(" ({:.0}% of all uploads; the rest came from the other peers)", 100.0 * sh.origin_uploaded as f64 / sh.total_uploaded as f64)
        } else {
            String::new()
        },
    )
}

impl App {
    /// The announce URL shown on the index page (without a request's Host header).
    pub fn tracker_announce_hint(&self) -> String {
        super::upload::announce_url(self.cfg.public_url.as_deref(), None, &self.cfg.listen, self.tracker.cfg.token.as_deref().map(|_| "<token>"))
    }
}
