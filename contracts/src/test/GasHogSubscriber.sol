// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IOracleRouter, IReportSubscriber, Report} from "../interfaces/IOracleRouter.sol";

/// @notice Test helper: a subscriber that burns all the gas it is given.
contract GasHogSubscriber is IReportSubscriber {
    uint256 public counter;

    IOracleRouter public immutable router;

    constructor(IOracleRouter router_) {
        router = router_;
    }

    function join(bytes32 subject) external {
        router.subscribe(subject);
    }

    function onReport(Report calldata) external override {
        while (true) {
            counter += 1;
        }
    }
}
