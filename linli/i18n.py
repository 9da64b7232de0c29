"""Messages people read in the CLI, zh-CN first with English beside it (templates hold longer texts)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "error": {"zh": "错误", "en": "Error"},
    "hint": {"zh": "怎么办", "en": "What to do"},
    "db_upgraded": {"zh": "数据库已升级到最新结构：{url}", "en": "Database is at the latest schema: {url}"},
    "seeded": {"zh": "示例社区已就绪：{summary}", "en": "Sample community ready: {summary}"},
    "report_filed": {"zh": "已受理，案件编号 {number}（{category}）",
                     "en": "Report filed as case {number} ({category})"},
    "prefect_down": {
        "zh": "未连接到 Prefect（{url}）：案件已保存，流程启动后会自动接手。",
        "en": "Prefect is not reachable at {url}: the case is saved and the flows pick it up once running.",
    },
    "no_cases": {"zh": "没有符合条件的案件。", "en": "No cases match."},
    "demo_ready": {"zh": "邻里演示已启动", "en": "Linli demo is running"},
    "demo_prefect_ui": {"zh": "Prefect 界面（流程、部署、运行记录）", "en": "Prefect UI (flows, deployments, runs)"},
    "demo_dashboard": {"zh": "管理驾驶舱", "en": "Dashboard"},
    "demo_stop": {"zh": "按 Ctrl-C 停止", "en": "Press Ctrl-C to stop"},
    "demo_stopping": {"zh": "正在停止……", "en": "Stopping…"},
    "demo_summary": {"zh": "案件状态：{counts}", "en": "Cases by status: {counts}"},
    "done": {"zh": "完成：{what}", "en": "Done: {what}"},
    "receiver_listening": {"zh": "通知接收器监听 {url}（Apprise 地址：{apprise}）",
                           "en": "Notification receiver listening on {url} (Apprise URL: {apprise})"},
    "dag_valid": {"zh": "✓ {source}：{name}（{steps} 个步骤）校验通过",
                  "en": "✓ {source}: {name} ({steps} steps) is valid"},
    "dag_deployed": {"zh": "已注册 {count} 个流程部署：{names}", "en": "Registered {count} deployments: {names}"},
    "dag_deploy_next": {"zh": "新流程需重启 `linli serve`（或演示）后才会运行。",
                        "en": "Restart `linli serve` (or the demo) to run processes it does not serve yet."},
    "dag_override_saved": {"zh": "已保存流程覆盖 {name}：下次运行生效。",
                           "en": "Saved the override of {name}: it takes effect on the next run."},
    "dag_written": {"zh": "已写入 {path}", "en": "Wrote {path}"},
    "dag_no_tasks": {"zh": "没有注册任何任务。", "en": "No tasks are registered."},
    "api_listening": {"zh": "Open311 接口已启动：{url}（Ctrl-C 停止）",
                      "en": "Open311 API listening on {url} (Ctrl-C to stop)"},
    "apikey_created": {"zh": "已为 {name} 创建接口密钥（只显示这一次，请妥善保存）：",
                       "en": "API key for {name} (shown only this once; keep it safe):"},
    "policy_ok": {"zh": "治理策略有效：{path}", "en": "The governance policy is valid: {path}"},
    "ingest_running": {"zh": "数据接入服务已启动：{host}:{port}（客户端 {client}），按 Ctrl-C 停止",
                       "en": "Ingest running on {host}:{port} (client {client}); Ctrl-C stops it"},
    "ingest_counters": {"zh": "已接收 {received}，已写入 {written}，重复 {duplicates}，死信 {dead_lettered}，"
                              "告警 {alarms}，排队 {queued}，延迟 {lag_seconds} 秒",
                        "en": "received {received}, written {written}, duplicates {duplicates}, "
                              "dead-lettered {dead_lettered}, alarms {alarms}, queued {queued}, lag {lag_seconds} s"},
    "devices_imported": {"zh": "已导入 {count} 台设备", "en": "Imported {count} devices"},
    "simulating": {"zh": "模拟 {devices} 台设备，每秒 {rate} 条消息",
                   "en": "Simulating {devices} devices at {rate} msg/s"},
    "simulated": {"zh": "模拟结束：{seconds} 秒内发送 {sent} 条",
                  "en": "Simulation done: {sent} messages in {seconds} s"},
    "import_line": {"zh": "行号", "en": "Line"},
    "import_field": {"zh": "字段", "en": "Field"},
    "import_problem": {"zh": "问题", "en": "Problem"},
    "import_dry_run": {"zh": "试导入 {kind}：共 {rows} 行，{good} 行可导入，{bad} 行有误；未写入任何数据。",
                       "en": "Dry run of {kind}: {rows} rows, {good} good, {bad} bad; nothing was written."},
    "import_done": {"zh": "已导入 {kind}：共 {rows} 行，导入 {good} 行，{bad} 行有误未导入。",
                    "en": "Imported {kind}: {rows} rows, {good} imported, {bad} bad rows skipped."},
    "user_added": {"zh": "已添加账号 {username}（角色 {role}）", "en": "Added account {username} (role {role})"},
    "patrol_scanned": {"zh": "已记录巡更打卡：{checkpoint}", "en": "Scan recorded: {checkpoint}"},
    "patrol_checked": {"zh": "巡更检查：新增漏巡 {missed} 个、迟到 {late} 个",
                       "en": "Patrol check: {missed} missed, {late} late (new)"},
    "notice_published": {"zh": "公告已发布给 {recipients} 位居民：{counts}",
                         "en": "Announcement published to {recipients} residents: {counts}"},
    "credential_enrolled": {"zh": "已为居民 {resident} 登记门禁方式：{method}（只保存凭证编号）",
                            "en": "Resident {resident} now has access method {method} (only its reference is kept)"},
    "care_watching": {"zh": "居民 {resident} 已纳入居家养老关爱：{hours} 小时无活动即提醒网格员上门",
                      "en": "Resident {resident} is watched: {hours} hours without activity brings a welfare check"},
    "care_checked": {"zh": "居家养老巡查完成，新开探访工单：{cases}",
                     "en": "Care watch done; welfare checks opened: {cases}"},
    "simulating_alone": {"zh": "独居居民 {resident}（门磁 {door}）：{state}",
                         "en": "Resident {resident} living alone (door magnet {door}): {state}"},
    "alone_active": {"zh": "每隔几秒开关门", "en": "opens the door every few seconds"},
    "alone_silent": {"zh": "始终不开门——下一次居家养老巡查（care-watch）将派探访工单给网格员",
                     "en": "never opens the door — the next care-watch run sends a welfare check to the grid worker"},
    "mqtt_auth_written": {"zh": "已生成 MQTT 账号：{devices} 台设备（沿用 {kept}，新发 {issued}，删除 {removed}）；"
                                "密码文件 {passwd}，ACL {acl}",
                          "en": "MQTT credentials written: {devices} devices ({kept} kept, {issued} issued, "
                                "{removed} removed); password file {passwd}, ACL {acl}"},
    "mqtt_auth_handoff": {"zh": "新密码仅此一份：{path}（交给设备安装人员后删除，邻里不保存明文）",
                          "en": "New passwords, in this one file only: {path} (hand it to the installers, "
                                "then delete it; Linli keeps no clear text)"},
    "mqtt_auth_reload": {"zh": "让 Mosquitto 读取新文件：docker compose restart mosquitto",
                         "en": "Make Mosquitto read them: docker compose restart mosquitto"},
    "pool_ready": {"zh": "工作池 {pool}（process）{state}", "en": "Work pool {pool} (process) {state}"},
    "pool_created": {"zh": "已创建", "en": "created"},
    "pool_existed": {"zh": "已存在", "en": "already existed"},
}


def t(key: str, lang: str = "zh", **values: object) -> str:
    """The message `key` in `lang` (zh when the language lacks it), with values filled in."""
    entry = MESSAGES[key]
    return entry.get(lang, entry["zh"]).format(**values)
