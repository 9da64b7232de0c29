"""Every label the dashboard shows, in zh-CN (first) and English, plus the helpers that pick and format them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from linli.settings import get_settings

LANGUAGE_KEY = "english"  # session-state key of the sidebar's English toggle

ZH: dict[str, str] = {
    "app_title": "邻里 · 社区治理看板",
    "english": "English",
    "nav_overview": "总览",
    "nav_flows": "流程运行",
    "refresh": "每 {seconds} 秒自动刷新 · 更新于 {time}",
    "db_missing": "邻里数据库还没有建表：请先运行 `linli demo`。",
    # overview
    "overview_title": "社区治理总览",
    "community": "社区",
    "all": "全部",
    "kpi_open": "在办案件",
    "kpi_new_today": "今日新增",
    "kpi_closed_today": "今日结案",
    "kpi_overdue": "已超期",
    "kpi_median": "办理时长中位数",
    "kpi_median_help": "近 30 天结案案件从上报到结案的小时数中位数",
    "kpi_satisfaction": "平均评分",
    "kpi_satisfaction_help": "近 30 天的居民评价（1–5 分），共 {n} 条",
    "kpi_satisfied_share": "满意率（≥4 分）",
    "hours": "{value:.1f} 小时",
    "none": "—",
    "by_status": "案件状态分布",
    "cases": "案件数",
    "case_list": "案件列表",
    "filter_status": "状态",
    "filter_category": "类别",
    "filter_overdue": "只看超期",
    "no_cases": "没有符合条件的案件。",
    "col_number": "编号",
    "col_status": "状态",
    "col_category": "类别",
    "col_community": "社区",
    "col_created": "上报时间",
    "col_due": "办理时限",
    "col_overdue": "超期",
    "col_level": "督办层级",
    "col_priority": "优先级",
    "col_assignee": "处置人",
    "col_reporter": "上报人",
    "timeline": "案件时间线",
    "pick_case": "选择案件查看时间线",
    "pick_case_placeholder": "输入或选择案件编号",
    "col_at": "时间",
    "col_actor": "操作者",
    "col_action": "动作",
    "col_from": "原状态",
    "col_to": "新状态",
    "col_reason": "原因",
    "no_events": "这个案件还没有时间线记录。",
    "status.reported": "已上报",
    "status.assessing": "研判中",
    "status.dispatched": "已派单",
    "status.in_progress": "处置中",
    "status.resolved": "已处置待评价",
    "status.closed": "已结案",
    "status.merged": "已合并",
    "status.rejected": "已驳回",
    "status.reopened": "已重启",
    "level.0": "社区",
    "level.1": "街道",
    "level.2": "区职能部门",
    "priority.1": "紧急",
    "priority.2": "一般",
    "priority.3": "较低",
    # flow runs
    "flows_title": "流程运行情况",
    "open_prefect": "打开 Prefect 界面",
    "prefect_unreachable": "无法连接 Prefect，暂时看不到流程运行情况。",
    "recent_runs": "最近的流程运行",
    "no_runs": "还没有流程运行。",
    "deployments": "部署（流程的计划与触发）",
    "no_deployments": "还没有部署。",
    "col_run": "运行",
    "col_flow": "流程",
    "col_deployment": "部署",
    "col_state": "状态",
    "col_start": "开始时间",
    "col_duration": "耗时",
    "col_name": "名称",
    "col_schedule": "计划",
    "col_triggers": "触发器",
    "col_paused": "已暂停",
    "state.COMPLETED": "已完成",
    "state.RUNNING": "运行中",
    "state.FAILED": "失败",
    "state.CRASHED": "崩溃",
    "state.SCHEDULED": "已计划",
    "state.PENDING": "等待中",
    "state.CANCELLED": "已取消",
    "state.CANCELLING": "取消中",
    "state.PAUSED": "已暂停",
    # devices (issue 5)
    "nav_devices": "设备", "nav_alarms": "告警", "nav_records": "通行记录", "nav_datahub": "数据推送",
    "devices_title": "设备状态", "dev_online": "在线", "dev_offline": "离线", "dev_maintenance": "维护中",
    "dev_filter_state": "状态", "dev_buildings": "楼栋视图", "dev_list": "设备列表", "no_devices": "还没有设备。",
    "dv_code": "编号", "dv_type": "类型", "dv_building": "楼栋", "dv_floor": "楼层", "dv_state": "状态",
    "dv_battery": "电量", "dv_last_seen": "最后在线", "dv_online": "在线", "dv_offline": "离线",
    "dv_maintenance": "维护中", "dv_alarms": "告警",
    "alarms_title": "告警", "no_alarms": "当前没有告警。", "dv_alarm": "告警", "dv_severity": "级别",
    "dv_device": "设备", "dv_place": "位置", "dv_count": "次数", "dv_first": "首次", "dv_last": "最近",
    "dv_detail": "详情", "dv_case": "案件", "alarm_pick": "选择告警", "alarm_who": "处理人（如 staff:3）",
    "alarm_ack": "确认", "alarm_clear": "解除", "alarm_done": "告警 {id} 已{what}", "alarm_snapshot": "抓拍",
    "severity.critical": "紧急", "severity.major": "重要", "severity.minor": "次要", "severity.warning": "提示",
    "alarm.active": "未确认", "alarm.acknowledged": "已确认", "alarm.cleared": "已解除",
    "records_title": "通行记录（已脱敏）", "access_records": "门禁", "vehicle_records": "车辆",
    "dv_time": "时间", "dv_gate": "门/道闸", "dv_method": "方式", "dv_credential": "凭证",
    "dv_direction": "方向", "dv_granted": "放行", "dv_plate": "车牌", "no_records": "暂无记录。",
    "records_privacy": "不存储人脸图像或特征，只记录开门方式和凭证编号；证件号和车牌默认脱敏。",
    "datahub_title": "数据推送状态", "no_endpoints": "还没有推送过（在 Prefect 里添加数据中台推送地址块）。",
    "dv_endpoint": "推送地址", "dv_delivered": "已送达", "dv_parked": "暂存", "dv_behind": "待推送",
    "dv_error": "最后错误", "dv_updated": "更新时间",
}

EN: dict[str, str] = {
    "app_title": "Linli · community governance dashboard",
    "english": "English",
    "nav_overview": "Overview",
    "nav_flows": "Flow runs",
    "refresh": "Refreshes every {seconds} s · updated {time}",
    "db_missing": "Linli's database has no tables yet: run `linli demo` first.",
    "overview_title": "Community governance overview",
    "community": "Community",
    "all": "All",
    "kpi_open": "Open cases",
    "kpi_new_today": "New today",
    "kpi_closed_today": "Closed today",
    "kpi_overdue": "Overdue",
    "kpi_median": "Median handling time",
    "kpi_median_help": "Median hours from report to closure of cases closed in the last 30 days",
    "kpi_satisfaction": "Mean rating",
    "kpi_satisfaction_help": "Residents' ratings (1–5) in the last 30 days: {n} in all",
    "kpi_satisfied_share": "Satisfied (rating ≥ 4)",
    "hours": "{value:.1f} h",
    "none": "—",
    "by_status": "Cases by status",
    "cases": "Cases",
    "case_list": "Cases",
    "filter_status": "Status",
    "filter_category": "Category",
    "filter_overdue": "Overdue only",
    "no_cases": "No case matches these filters.",
    "col_number": "Number",
    "col_status": "Status",
    "col_category": "Category",
    "col_community": "Community",
    "col_created": "Reported",
    "col_due": "Due",
    "col_overdue": "Overdue",
    "col_level": "Escalation",
    "col_priority": "Priority",
    "col_assignee": "Assignee",
    "col_reporter": "Reporter",
    "timeline": "Case timeline",
    "pick_case": "Pick a case to see its timeline",
    "pick_case_placeholder": "Type or pick a case number",
    "col_at": "Time",
    "col_actor": "Actor",
    "col_action": "Action",
    "col_from": "From",
    "col_to": "To",
    "col_reason": "Reason",
    "no_events": "This case has no timeline yet.",
    "status.reported": "Reported",
    "status.assessing": "Assessing",
    "status.dispatched": "Dispatched",
    "status.in_progress": "In progress",
    "status.resolved": "Resolved, awaiting rating",
    "status.closed": "Closed",
    "status.merged": "Merged",
    "status.rejected": "Rejected",
    "status.reopened": "Reopened",
    "level.0": "Community",
    "level.1": "Street office",
    "level.2": "District department",
    "priority.1": "Urgent",
    "priority.2": "Normal",
    "priority.3": "Low",
    "flows_title": "Flow runs",
    "open_prefect": "Open the Prefect UI",
    "prefect_unreachable": "Prefect cannot be reached, so flow runs cannot be shown right now.",
    "recent_runs": "Recent flow runs",
    "no_runs": "No flow has run yet.",
    "deployments": "Deployments (schedules and triggers)",
    "no_deployments": "No deployment yet.",
    "col_run": "Run",
    "col_flow": "Flow",
    "col_deployment": "Deployment",
    "col_state": "State",
    "col_start": "Started",
    "col_duration": "Duration",
    "col_name": "Name",
    "col_schedule": "Schedule",
    "col_triggers": "Triggers",
    "col_paused": "Paused",
    "state.COMPLETED": "Completed",
    "state.RUNNING": "Running",
    "state.FAILED": "Failed",
    "state.CRASHED": "Crashed",
    "state.SCHEDULED": "Scheduled",
    "state.PENDING": "Pending",
    "state.CANCELLED": "Cancelled",
    "state.CANCELLING": "Cancelling",
    "state.PAUSED": "Paused",
    # devices (issue 5)
    "nav_devices": "Devices", "nav_alarms": "Alarms", "nav_records": "Access records", "nav_datahub": "Data hub",
    "devices_title": "Devices", "dev_online": "Online", "dev_offline": "Offline", "dev_maintenance": "Maintenance",
    "dev_filter_state": "State", "dev_buildings": "By building", "dev_list": "Devices", "no_devices": "No devices yet.",
    "dv_code": "Code", "dv_type": "Type", "dv_building": "Building", "dv_floor": "Floor", "dv_state": "State",
    "dv_battery": "Battery", "dv_last_seen": "Last seen", "dv_online": "Online", "dv_offline": "Offline",
    "dv_maintenance": "Maintenance", "dv_alarms": "Alarms",
    "alarms_title": "Alarms", "no_alarms": "No open alarms.", "dv_alarm": "Alarm", "dv_severity": "Severity",
    "dv_device": "Device", "dv_place": "Where", "dv_count": "Count", "dv_first": "First", "dv_last": "Last",
    "dv_detail": "Detail", "dv_case": "Case", "alarm_pick": "Pick an alarm", "alarm_who": "Who (e.g. staff:3)",
    "alarm_ack": "Acknowledge", "alarm_clear": "Clear", "alarm_done": "Alarm {id} {what}", "alarm_snapshot": "Snapshot",
    "severity.critical": "critical", "severity.major": "major", "severity.minor": "minor",
    "severity.warning": "warning",
    "alarm.active": "active", "alarm.acknowledged": "acknowledged", "alarm.cleared": "cleared",
    "records_title": "Access and vehicle records (masked)", "access_records": "Access", "vehicle_records": "Vehicles",
    "dv_time": "Time", "dv_gate": "Gate", "dv_method": "Method", "dv_credential": "Credential",
    "dv_direction": "Direction", "dv_granted": "Granted", "dv_plate": "Plate", "no_records": "No records yet.",
    "records_privacy": "No face images or templates are stored, only the method and a credential reference; "
                       "ID numbers and plates are masked.",
    "datahub_title": "Data-hub pushes",
    "no_endpoints": "Nothing pushed yet (add a data-hub endpoint block in Prefect).",
    "dv_endpoint": "Endpoint", "dv_delivered": "Delivered", "dv_parked": "Parked", "dv_behind": "Behind",
    "dv_error": "Last error", "dv_updated": "Updated",
}

TEXTS: dict[str, dict[str, str]] = {"zh": ZH, "en": EN}


def t(key: str, lang: str, **values: object) -> str:
    """The label `key` in `lang` (falling back to Chinese, then to the key), formatted with `values`."""
    text = TEXTS.get(lang, ZH).get(key) or ZH.get(key) or key
    return text.format(**values) if values else text


def current_language() -> str:
    """'en' when the sidebar's English toggle is on, else 'zh'; the setting decides before it is drawn."""
    english = st.session_state.get(LANGUAGE_KEY)
    if english is None:
        return str(get_settings().language.value)
    return "en" if english else "zh"


def local_time(value: datetime | None, tz: str) -> str:
    """A timestamp as local wall time, 'YYYY-MM-DD HH:MM'; '' for none."""
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if value else ""


def duration(value: timedelta | None) -> str:
    """A duration as '1:02:03' (or '12.3s' under a minute); '' for none."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
