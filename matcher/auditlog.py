"""The audit log as staff read it: each entry a Chinese sentence, its time in the 科协's own zone.

    describe(entry, names)  -> "将需求 Q0001 的状态从「新需求」改为「已联系」"
    actor_label("staff:lihua") -> "lihua"
    ACTIONS["feedback.add"] -> "记录对接反馈"   (the filter's choices; the code stays the filter's value)

The log itself keeps codes (`login.failed`, `feedback.add`) and JSON details, so that filters and
other systems read it; this module is the one place that says them in words. An action it does not
know is "其他操作", never its code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from matcher.models import DEMAND_STATUS_LABELS, VERDICT_LABELS
from matcher.records import AuditEntry
from matcher.timefmt import local_time

#: Every action the log holds, by code, as the audit page's filter names it.
ACTIONS: dict[str, str] = {
    "login": "登录", "login.failed": "登录失败", "login.refused": "锁定中登录被拒", "logout": "退出登录",
    "user.add": "新增账号", "user.passwd": "修改密码", "user.reset": "重置密码", "user.unlock": "解锁账号",
    "user.disable": "停用账号", "user.enable": "启用账号",
    "apikey.add": "生成 API 密钥", "apikey.revoke": "停用 API 密钥", "apikey.failed": "无效的 API 密钥",
    "demand.create": "新建需求", "demand.save": "保存实时匹配", "demand.status": "修改需求状态",
    "demand.needs_team": "标记组团需求", "feedback.add": "记录对接反馈",
    "outcome.add": "记录对接成果", "outcome.delete": "删除对接成果",
    "expert.create": "新增专家", "expert.replace": "替换专家档案", "expert.update": "修改专家档案",
    "expert.document": "补充论文专利项目", "expert.delete": "删除专家", "expert.pause": "暂停推荐",
    "expert.resume": "恢复推荐", "merge.undo": "撤销合并",
    "contact.view": "查看联系方式", "contact.export": "导出联系方式",
    "import.demands": "导入需求文件", "import.experts": "导入专家文件",
    "batch.start": "启动批处理", "export.download": "下载表格", "report.download": "下载年度报告",
    "backup.restore": "从备份恢复",
    "feedback.withdraw": "撤回对接反馈", "proposal.accept": "采纳学到的关联",
    "proposal.reject": "否决学到的关联", "proposal.reopen": "重新审议学到的关联",
    "thesaurus.import": "导入本地词表", "thesaurus.revert": "恢复本地词表版本",
    "learning.import": "导入学习数据",
}
_ROLES = {"staff": "工作人员", "admin": "管理员", "read": "只读", "write": "读写"}
_KINDS = {"demands": "需求", "experts": "专家"}
_SOURCES = {"form": "新建需求表单", "live": "实时匹配", "api": "接口"}


def actor_label(actor: str) -> str:
    """Who acted, as staff read it: a user name, 命令行（root）, API 密钥「省平台」, 未知来源."""
    kind, _, who = actor.partition(":")
    if kind == "staff":
        return who
    if kind == "cli":
        return f"命令行（{who}）" if who else "命令行"
    if kind == "key":
        return f"API 密钥（{who}）"
    if kind == "apikey":
        return f"API 密钥「{who}」"
    if kind == "anonymous":
        return f"未登录（用户名「{who}」）" if who else "未登录"
    if actor.startswith("anonymous@"):
        return f"未登录（{actor.partition('@')[2]}）"
    return actor


def _target(target: str) -> str:
    kind, _, what = target.partition(":")
    return {"demand": f"需求 {what}", "expert": f"专家 {what}", "user": f"账号「{what}」",
            "apikey": f"API 密钥 {what}", "file": f"文件「{what}」"}.get(kind, target)


def _expert(names: Mapping[str, str], expert_id: str) -> str:
    name = names.get(expert_id)
    return f"{name}（{expert_id}）" if name and name != expert_id else f"专家 {expert_id}"


def _quoted(items: Any) -> str:
    return "、".join(f"「{i}」" for i in (items or []))


def _login_failed(e: AuditEntry, d: Mapping[str, Any], tz: str) -> str:
    text = f"登录失败（连续第 {d.get('failures', 1)} 次"
    if d.get("reason") == "unknown user":
        text += "，用户名不存在"
    if d.get("disabled"):
        text += "，账号已停用"
    if d.get("locked_until"):
        text += f"，账号锁定至 {local_time(d['locked_until'], tz, label=False)}"
    return text + "）"


def _feedback(e: AuditEntry, d: Mapping[str, Any], names: Mapping[str, str]) -> str:
    verdict = VERDICT_LABELS.get(str(d.get("verdict")), "反馈")
    text = f"{_target(e.target)}：{_expert(names, str(d.get('expert_id', '')))} 记为「{verdict}」"
    if d.get("status"):
        text += f"，需求状态改为「{DEMAND_STATUS_LABELS.get(d['status'], d['status'])}」"
    if d.get("note"):
        text += f"（备注：{d['note']}）"
    return text


def _outcome(verb: str, e: AuditEntry, d: Mapping[str, Any], names: Mapping[str, str]) -> str:
    experts = "、".join(_expert(names, x) for x in d.get("experts", []))
    value = d.get("value")
    amount = f"{value:g}" if isinstance(value, int | float) else str(value or "")
    return (f"{verb}{_target(e.target)}的成果「{d.get('kind', '')}」{amount} {d.get('unit', '')}"
            f"（{d.get('date', '')}{'，' + experts if experts else ''}）")


def _import(e: AuditEntry, d: Mapping[str, Any]) -> str:
    kind = _KINDS.get(e.action.partition(".")[2], "")
    parts = [f"新增 {d.get('inserted', 0)}", f"更新 {d.get('updated', 0)}", f"不变 {d.get('unchanged', 0)}"]
    if d.get("merged"):
        parts.append(f"合并 {d['merged']}")
    if d.get("rejected"):
        parts.append(f"跳过有误的行 {d['rejected']}")
    return f"导入{kind}{_target(e.target)}：{'，'.join(parts)}"


def _status(code: str) -> str:
    return DEMAND_STATUS_LABELS.get(code, code)


def _save(e: AuditEntry, d: Mapping[str, Any]) -> str:
    experts = len(d.get("experts", []))
    text = f"把粘贴的需求保存为{_target(e.target)}「{d.get('title', '')}」，实时匹配推荐 {experts} 位专家"
    if d.get("exclude_terms"):
        text += f"，排除的词：{_quoted(d['exclude_terms'])}"
    if d.get("extra_terms"):
        text += f"，补充的词：{_quoted(d['extra_terms'])}"
    return text


def _pair(d: Mapping[str, Any]) -> str:
    return f"「{d.get('phrase', '')}」→「{d.get('concept', '')}」"


#: What the proposals page and `matcher learning` write (issue 28), as sentences.
_LEARNING: dict[str, Callable[[AuditEntry, Mapping[str, Any]], str]] = {
    "proposal.accept": lambda e, d: f"采纳学到的关联{_pair(d)}，写入本地词表第 {d.get('version', '')} 版",
    "proposal.reject": lambda e, d: f"否决学到的关联{_pair(d)}",
    "proposal.reopen": lambda e, d: f"重新审议学到的关联{_pair(d)}",
    "thesaurus.import": lambda e, d: (
        f"导入本地词表，生成第 {d.get('version', '')} 版（{d.get('entries', 0)} 条）"
    ),
    "thesaurus.revert": lambda e, d: (
        f"把本地词表恢复到第 {d.get('from', '')} 版（生成第 {d.get('version', '')} 版）"
    ),
    "learning.import": lambda e, d: (
        f"导入学习数据：反馈 {d.get('verdicts', 0)} 条、成果 {d.get('outcomes', 0)} 条、"
        f"审议 {d.get('decisions', 0)} 条、词表版本 {d.get('versions', 0)} 个"
    ),
}


def _sentences(
    names: Mapping[str, str], tz: str
) -> dict[str, Callable[[AuditEntry, Mapping[str, Any]], str]]:
    role = lambda d: _ROLES.get(str(d.get("role")), str(d.get("role", "")))  # noqa: E731
    return {
        "login": lambda e, d: "登录" + ("（密码已按新参数重新加密）" if d.get("password_rehashed") else ""),
        "login.failed": lambda e, d: _login_failed(e, d, tz),
        "login.refused": lambda e, d: (
            "账号锁定中，登录被拒绝"
            + (
                f"（锁定至 {local_time(d['locked_until'], tz, label=False)}）"
                if d.get("locked_until")
                else ""
            )
        ),
        "logout": lambda e, d: "退出登录",
        "user.add": lambda e, d: f"新增{_target(e.target)}（{role(d)}）",
        "user.passwd": lambda e, d: f"修改{_target(e.target)}的密码",
        "user.reset": lambda e, d: f"为{_target(e.target)}生成一次性密码（登录后须自行修改）",
        "user.unlock": lambda e, d: f"解锁{_target(e.target)}",
        "user.disable": lambda e, d: f"停用{_target(e.target)}",
        "user.enable": lambda e, d: f"启用{_target(e.target)}",
        "apikey.add": lambda e, d: f"生成 API 密钥「{d.get('name', '')}」（{role(d)}）",
        "apikey.revoke": lambda e, d: f"停用 API 密钥「{d.get('name', '')}」",
        "apikey.failed": lambda e, d: "使用了无效的 API 密钥",
        "demand.create": lambda e, d: (
            f"通过{_SOURCES.get(str(d.get('source')), '接口')}新建{_target(e.target)}"
            + (f"「{d['title']}」" if d.get("title") else "")
        ),
        "demand.save": _save,
        "demand.status": lambda e, d: (
            f"将{_target(e.target)}的状态从「{_status(d.get('from', ''))}」改为「{_status(d.get('to', ''))}」"
        ),
        "demand.needs_team": lambda e, d: (
            f"将{_target(e.target)}" + ("标记为组团需求" if d.get("needs_team") else "取消组团需求标记")
        ),
        "feedback.add": lambda e, d: _feedback(e, d, names),
        "outcome.add": lambda e, d: _outcome("记录", e, d, names),
        "outcome.delete": lambda e, d: _outcome("删除", e, d, names),
        "expert.create": lambda e, d: f"新增{_target(e.target)}",
        "expert.replace": lambda e, d: f"替换{_target(e.target)}的档案",
        "expert.update": lambda e, d: (
            f"修改{_expert(names, e.target.partition(':')[2])}的档案"
            + (f"（{'、'.join(_FIELDS.get(f, f) for f in d.get('fields', []))}）" if d.get("fields") else "")
        ),
        "expert.document": lambda e, d: (
            f"为{_expert(names, e.target.partition(':')[2])}补充"
            f"{_DOCS.get(str(d.get('kind')), '成果')}「{d.get('title', '')}」"
        ),
        "expert.delete": lambda e, d: f"删除{_target(e.target)}",
        "expert.pause": lambda e, d: (
            f"暂停推荐{_expert(names, e.target.partition(':')[2])}至 {d.get('until', '')}"
            + (f"（{d['reason']}）" if d.get("reason") else "")
        ),
        "expert.resume": lambda e, d: f"恢复推荐{_expert(names, e.target.partition(':')[2])}",
        "merge.undo": lambda e, d: (
            f"撤销合并 {d.get('merge_id', '')}：{d.get('merged_id', '')} 从{_target(e.target)}中拆分出来"
        ),
        "contact.view": lambda e, d: (
            "查看"
            + "、".join(_expert(names, x) for x in d.get("experts", []))
            + "的联系方式"
            + _where(str(d.get("where") or ""))
        ),
        "contact.export": lambda e, d: f"导出含联系方式的数据（{d.get('rows', '')} 行）",
        "import.demands": _import,
        "import.experts": _import,
        "batch.start": lambda e, d: f"从页面启动批处理（运行编号 {d.get('run_key', '')}）",
        "feedback.withdraw": lambda e, d: (
            f"撤回对{_target(e.target)}的反馈：{_expert(names, str(d.get('expert_id', '')))}"
            f"「{VERDICT_LABELS.get(str(d.get('verdict')), '反馈')}」"
        ),
        "export.download": lambda e, d: f"下载{d.get('what', '表格')}（{d.get('rows', 0)} 行）",
        "report.download": lambda e, d: (
            f"下载年度报告（{d.get('from') or '最早'} 至 {d.get('to') or '今天'}）"
        ),
        "backup.restore": lambda e, d: "从备份恢复数据库",
    }


_FIELDS = {"name": "姓名", "title": "职称", "institution": "工作单位", "region": "所在地区",
           "research_fields": "研究方向", "bio": "简介", "tags": "标签", "documents": "论文、专利、项目"}
_DOCS = {"paper": "论文", "patent": "专利", "project": "项目", "achievement": "成果"}
_WHERE = {"expert page": "专家页面", "match": "专家匹配", "match.xlsx": "专家匹配的表格"}


def _where(where: str) -> str:
    if where.startswith("demand "):
        return f"（在需求 {where.partition(' ')[2]} 的页面）"
    return f"（在{_WHERE[where]}）" if where in _WHERE else ""


def describe(entry: AuditEntry, names: Mapping[str, str] | None = None, tz: str = "Asia/Shanghai") -> str:
    """The entry as one Chinese sentence (experts named from `names`, id -> name)."""
    detail = entry.detail if isinstance(entry.detail, Mapping) else {}
    say = _sentences(names or {}, tz).get(entry.action) or _LEARNING.get(entry.action)
    if say is None:
        return f"{ACTIONS.get(entry.action, '其他操作')}（{_target(entry.target)}）" if entry.target else \
            ACTIONS.get(entry.action, "其他操作")
    try:
        return say(entry, detail)
    except (KeyError, TypeError, ValueError, AttributeError):  # a detail of another shape: say less
        return ACTIONS.get(entry.action, "其他操作")


def expert_ids(entry: AuditEntry) -> set[str]:
    """The experts an entry names (to look their names up once for a page of entries)."""
    d = entry.detail if isinstance(entry.detail, Mapping) else {}
    ids = {str(x) for x in d.get("experts", []) if isinstance(x, str)}
    if isinstance(d.get("expert_id"), str):
        ids.add(d["expert_id"])
    if entry.target.startswith("expert:"):
        ids.add(entry.target.partition(":")[2])
    return ids
