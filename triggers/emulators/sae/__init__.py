"""The Alibaba Cloud SAE job API emulator (`ExecJob`, `DescribeJobStatus`, `DescribeJobHistory`)
over the Cloud Run emulator's executions store: each job of the jobs file is also an SAE job
template, run as local processes. Served by the shared shell in `triggers.emulators.http`.
"""
