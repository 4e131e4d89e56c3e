// mesh-x402 Payments page for mesh-llm's console.
//
// A browser-ready ES module (no build step, no framework): the console
// imports it from the plugin's web bundle and calls registerMeshPluginUi(host).
// All data comes from the plugin's own HTTP bindings through
// host.network.json('http/x402/...'); the colours come from
// host.appearance.tokens, so the page follows the console's light and dark
// themes. Amounts are integers of the token's atomic units, kept as strings
// from the wire to the screen so nothing is rounded.

const ROUTES = {
  node: 'http/x402/node',
  balances: 'http/x402/balances',
  receipts: 'http/x402/receipts',
  batches: 'http/x402/batches',
  earnings: 'http/x402/earnings'
}
const DEFAULT_REFRESH_SECONDS = 5
const DEFAULT_RECEIPT_ROWS = 20
const SVG_NS = 'http://www.w3.org/2000/svg'

export function registerMeshPluginUi (host) {
  return { pages: { payments: mountPayments } }
}

// Settings are the operator's, kept by the host ([plugin.settings]); the
// plugin process never sees them, so the page reads them itself.
function setting (host, key, fallback, low, high) {
  const settings = (host.config && host.config.visible && host.config.visible.settings) || {}
  const value = Number(settings[key])
  return Number.isInteger(value) && value >= low && value <= high ? value : fallback
}

function palette (appearance) {
  const dark = appearance && appearance.theme === 'dark'
  const t = (appearance && appearance.tokens) || {}
  return {
    background: t.background || (dark ? '#0f1115' : '#ffffff'),
    foreground: t.foreground || (dark ? '#e7e9ee' : '#1a1d23'),
    panel: t.panel || (dark ? '#171a21' : '#f6f7f9'),
    panelStrong: t.panelStrong || (dark ? '#1f232c' : '#eceef2'),
    border: t.border || (dark ? '#2b303b' : '#d9dde4'),
    borderSoft: t.borderSoft || (dark ? '#232733' : '#e8eaef'),
    accent: t.accent || (dark ? '#7aa2ff' : '#2f5bd3'),
    accentInk: t.accentInk || '#ffffff',
    good: t.good || (dark ? '#4ade80' : '#15803d'),
    warn: t.warn || (dark ? '#fbbf24' : '#b45309'),
    bad: t.bad || (dark ? '#f87171' : '#b91c1c'),
    radius: t.radius || '6px',
    radiusLarge: t.radiusLarge || '10px'
  }
}

function el (tag, attrs, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue
    if (key === 'style') Object.assign(node.style, value)
    else if (key === 'text') node.textContent = value
    else node.setAttribute(key, value)
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child)
  }
  return node
}

function svg (tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag)
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value))
  return node
}

function amount (value) {
  return value === null || value === undefined ? '—' : String(value)
}

function shortHash (hash) {
  return hash && hash.length > 18 ? `${hash.slice(0, 10)}…${hash.slice(-6)}` : (hash || '—')
}

function when (seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : '—'
}

function mountPayments ({ element, host }) {
  const colors = palette(host.appearance)
  const refreshMs = 1000 * setting(host, 'refresh_seconds', DEFAULT_REFRESH_SECONDS, 1, 3600)
  const rows = setting(host, 'receipt_rows', DEFAULT_RECEIPT_ROWS, 1, 500)
  let stopped = false
  let timer = null

  const style = el('style', {
    text: `
.x402p { font: 14px/1.45 system-ui, sans-serif; color: ${colors.foreground}; background: ${colors.background};
  padding: 16px; display: grid; gap: 16px; }
.x402p h2 { margin: 0; font-size: 20px; }
.x402p h3 { margin: 0 0 8px; font-size: 15px; }
.x402p .card { background: ${colors.panel}; border: 1px solid ${colors.border}; border-radius: ${colors.radiusLarge};
  padding: 12px 14px; }
.x402p .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
.x402p .figure { background: ${colors.panelStrong}; border-radius: ${colors.radius}; padding: 8px 10px; }
.x402p .label { font-size: 12px; opacity: .75; }
.x402p .value { font: 600 16px/1.3 ui-monospace, monospace; overflow-wrap: anywhere; }
.x402p table { width: 100%; border-collapse: collapse; font-size: 13px; }
.x402p th, .x402p td { text-align: left; padding: 5px 6px; border-bottom: 1px solid ${colors.borderSoft}; }
.x402p td.num, .x402p th.num { text-align: right; }
.x402p td.num { font-family: ui-monospace, monospace; }
.x402p code { font-family: ui-monospace, monospace; font-size: 12px; }
.x402p .notice { border-radius: ${colors.radius}; padding: 8px 10px; border: 1px solid ${colors.warn}; color: ${colors.warn}; }
.x402p .empty { opacity: .75; font-style: italic; }
.x402p .state-settled, .x402p .state-confirmed { color: ${colors.good}; }
.x402p .state-failed, .x402p .state-released { color: ${colors.bad}; }
.x402p .state-chargeable, .x402p .state-sent, .x402p .state-accepted { color: ${colors.warn}; }
.x402p .meta { font-size: 12px; opacity: .7; }
.x402p .facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 6px 16px; }
.x402p .fact { display: grid; grid-template-columns: 130px 1fr; align-items: baseline; }
.x402p .mono { font: 13px/1.4 ui-monospace, monospace; overflow-wrap: anywhere; }
`
  })
  const root = el('div', { class: 'x402p', 'data-x402-page': 'payments' })
  const status = el('div', { class: 'meta', 'data-field': 'status', text: 'Loading…' })
  const notice = el('div', { class: 'notice', 'data-field': 'chain-notice', style: { display: 'none' } })
  const identity = el('div', { class: 'card' })
  const balances = el('div', { class: 'card' })
  const chart = el('div', { class: 'card' })
  const receipts = el('div', { class: 'card' })
  const batches = el('div', { class: 'card' })
  root.append(
    el('div', {}, el('h2', { text: 'Payments' }), status),
    notice, identity, balances, chart, receipts, batches
  )
  element.replaceChildren(style, root)

  function figure (label, value, field) {
    return el('div', { class: 'figure' },
      el('div', { class: 'label', text: label }),
      el('div', { class: 'value', 'data-field': field, text: amount(value) }))
  }

  function fact (label, value, field) {
    return el('div', { class: 'fact' },
      el('div', { class: 'label', text: label }),
      el('div', { class: 'mono', 'data-field': field, text: value === null || value === undefined ? '—' : String(value) }))
  }

  function renderIdentity (node) {
    const peer = node.peerId || {}
    const binding = node.peerIdBinding === 'match'
      ? 'on chain matches this node'
      : { mismatch: 'on chain differs from this node', unset: 'not set on chain', unknown: 'unknown' }[node.peerIdBinding] || node.peerIdBinding
    identity.replaceChildren(
      el('h3', { text: 'Node identity' }),
      el('div', { class: 'facts' },
        fact('agentId', node.agentId === null ? 'not registered (run mesh-x402 register)' : node.agentId, 'agent-id'),
        fact('Registry', node.agentRegistry || node.identityRegistry, 'registry'),
        fact('Signer', node.signer, 'signer'),
        fact('agentWallet', node.wallet, 'wallet'),
        fact('Peer id', peer.local || 'not yet seen from mesh-llm', 'peer-id'),
        fact('Peer id binding', binding, 'peer-binding'),
        fact('Chain', node.chain ? `eip155:${node.chain.chainId}` + (node.chain.block !== null ? `, block ${node.chain.block}` : '') : null, 'chain-id'),
        fact('Settlement contract', node.settlement, 'settlement')
      )
    )
  }

  function renderBalances (b) {
    balances.replaceChildren(
      el('h3', { text: 'Balances (atomic units)' }),
      el('div', { class: 'grid' },
        figure('Credited on chain (withdrawable)', b.credited, 'credited'),
        figure('Withdrawn', b.withdrawn, 'withdrawn'),
        figure(`Charged here, awaiting settlement (${b.pendingPayments})`, b.pendingSettlement, 'pending'),
        figure('Refunds owed to payers', b.refundsOwed, 'refunds'),
        figure(`Charged here, settled (${b.settledPayments})`, b.settled, 'settled')
      )
    )
  }

  function stateCell (state) {
    return el('td', { class: `state-${state}`, text: state })
  }

  function txCell (hash) {
    return el('td', {}, hash ? el('code', { 'data-tx': hash, title: hash, text: shortHash(hash) }) : '—')
  }

  function renderReceipts (data) {
    const list = data.receipts || []
    const head = el('h3', { text: `Recent receipts (${list.length} of ${data.total})` })
    if (list.length === 0) {
      receipts.replaceChildren(head, el('div', { class: 'empty', 'data-field': 'no-receipts', text: 'No receipts yet: no paid request has reached this node.' }))
      return
    }
    const body = el('tbody')
    for (const r of list) {
      const tokens = r.tokens ? `${r.tokens.prompt} + ${r.tokens.completion}` : '—'
      const shares = (r.shares || []).map((s) => `#${s.agentId}: ${s.amount}`).join(', ') || '—'
      body.append(el('tr', { 'data-receipt-id': r.receiptId },
        el('td', { text: when(r.createdAt) }),
        el('td', { text: r.model }),
        el('td', { class: 'num', text: tokens }),
        el('td', { class: 'num', 'data-col': 'charge', text: amount(r.charge) }),
        el('td', { class: 'num', 'data-col': 'refund', text: amount(r.refund) }),
        el('td', { text: shares }),
        stateCell(r.state),
        txCell(r.transaction)))
    }
    receipts.replaceChildren(head, el('table', {},
      el('thead', {}, el('tr', {}, ...['Time', 'Model', 'Tokens (in + out)', 'Charge', 'Refund', 'Share per agent', 'State', 'Settlement tx']
        .map((t, i) => el('th', { class: i >= 2 && i <= 4 ? 'num' : null, text: t })))),
      body))
  }

  function renderBatches (data) {
    const list = data.batches || []
    const head = el('h3', { text: `Settlement batches (${data.count})` })
    if (list.length === 0) {
      batches.replaceChildren(head, el('div', { class: 'empty', 'data-field': 'no-batches', text: 'No settlement batch sent yet.' }))
      return
    }
    const body = el('tbody')
    for (const b of list) {
      body.append(el('tr', { 'data-batch-id': String(b.id) },
        el('td', { class: 'num', text: String(b.id) }),
        el('td', { class: 'num', text: String(b.items) }),
        el('td', { class: 'num', 'data-col': 'total', text: b.total }),
        el('td', { class: 'num', text: b.gasUsed === null ? '—' : String(b.gasUsed) }),
        el('td', { class: 'num', text: b.confirmations === null ? '—' : String(b.confirmations) }),
        stateCell(b.state),
        txCell(b.txHash)))
    }
    batches.replaceChildren(head, el('table', {},
      el('thead', {}, el('tr', {}, ...['Batch', 'Payments', 'Total', 'Gas', 'Confirmations', 'State', 'Transaction']
        .map((t, i) => el('th', { class: i <= 4 ? 'num' : null, text: t })))),
      body))
  }

  function renderEarnings (data) {
    const series = data.series || []
    const head = el('h3', { text: `Earnings over time (total ${data.total}, ${data.bucketSeconds}s buckets)` })
    if (series.length === 0) {
      chart.replaceChildren(head, el('div', { class: 'empty', 'data-field': 'no-earnings', text: 'No earnings yet.' }))
      return
    }
    // Drawn at the card's own width so text and strokes keep their pixel sizes.
    const width = Math.max(320, Math.floor(chart.clientWidth) - 30)
    const height = 200
    const pad = 36
    // BigInt: atomic amounts can exceed 2^53; only the ratio is drawn.
    const values = series.map((p) => BigInt(p.cumulative))
    const top = values.reduce((a, b) => (b > a ? b : a), 1n)
    const x = (i) => pad + (series.length === 1 ? (width - 2 * pad) / 2 : (i * (width - 2 * pad)) / (series.length - 1))
    const y = (v) => height - pad - Number((v * 1000n) / top) * (height - 2 * pad) / 1000
    const drawing = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'cumulative earnings', 'data-field': 'earnings-chart' })
    drawing.append(svg('line', { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: colors.border }))
    drawing.append(svg('line', { x1: pad, y1: pad, x2: pad, y2: height - pad, stroke: colors.border }))
    const points = values.map((v, i) => `${x(i)},${y(v)}`).join(' ')
    const area = `${x(0)},${height - pad} ${points} ${x(values.length - 1)},${height - pad}`
    drawing.append(svg('polygon', { points: area, fill: colors.accent, 'fill-opacity': 0.15 }))
    drawing.append(svg('polyline', { points, fill: 'none', stroke: colors.accent, 'stroke-width': 2 }))
    values.forEach((v, i) => drawing.append(svg('circle', { cx: x(i), cy: y(v), r: series[i].count ? 3 : 1.5, fill: colors.accent })))
    const label = (text, lx, ly, anchor) => {
      const t = svg('text', { x: lx, y: ly, 'text-anchor': anchor, 'font-size': 11, fill: colors.foreground })
      t.textContent = text
      drawing.append(t)
    }
    label(String(top), pad + 4, pad - 8, 'start')
    label(new Date(series[0].start * 1000).toLocaleTimeString(), pad, height - 8, 'start')
    label(new Date(series[series.length - 1].start * 1000).toLocaleTimeString(), width - pad, height - 8, 'end')
    chart.replaceChildren(head, drawing)
  }

  function renderChain (chain) {
    if (chain && chain.connected) {
      notice.style.display = 'none'
      notice.textContent = ''
      return
    }
    notice.style.display = ''
    const reason = chain && chain.error ? `: ${chain.error}` : ''
    notice.textContent = `No chain connection${reason}. Ledger figures below are this node's own; on-chain balances are unknown until the chain answers.`
  }

  async function refresh () {
    try {
      const [node, bal, rec, bat, earn] = await Promise.all([
        host.network.json(ROUTES.node),
        host.network.json(ROUTES.balances),
        host.network.json(`${ROUTES.receipts}?limit=${rows}`),
        host.network.json(`${ROUTES.batches}?limit=${rows}`),
        host.network.json(ROUTES.earnings)
      ])
      if (stopped) return
      renderChain(node.chain)
      renderIdentity(node)
      renderBalances(bal)
      renderEarnings(earn)
      renderReceipts(rec)
      renderBatches(bat)
      status.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${refreshMs / 1000} s.`
      root.setAttribute('data-loaded', String(Date.now()))
    } catch (error) {
      if (stopped) return
      status.textContent = `Could not reach the plugin: ${error && error.message ? error.message : error}`
    } finally {
      if (!stopped) timer = setTimeout(refresh, refreshMs)
    }
  }

  refresh()
  return {
    unmount () {
      stopped = true
      if (timer !== null) clearTimeout(timer)
      element.replaceChildren()
    }
  }
}
